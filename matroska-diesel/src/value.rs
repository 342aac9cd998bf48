//! [`ToValue`]: how model fields become the [`Value`]s of ids and scopes.

use std::rc::Rc;
use std::sync::Arc;
use std::time::SystemTime;

use matroska_core::Value;

/// Reads a field of a model (an id, a scope field) as a [`Value`], without consuming it.
///
/// The derives call it on every id and scope field, and the generated scope filters call it on
/// their arguments, which have the field's own type: so the value a cached list depends on and
/// the value a write invalidates come from the same conversion and always match.
///
/// Implemented for the integer types, `bool`, `char`, `String` and `str`, [`SystemTime`],
/// [`Value`], references, `Box`, `Rc`, `Arc`, `Option` (`None` is [`Value::Null`]) and tuples of
/// up to four (composite keys); with the `chrono` feature for chrono's `NaiveDateTime` and
/// `DateTime` (timestamps, microseconds) and `NaiveDate` (text, `YYYY-MM-DD`); with the `uuid`
/// feature for `Uuid` (text, lowercase and hyphenated). Implement it for your own key or enum
/// types.
///
/// # Examples
///
/// ```
/// use matroska_diesel::{ToValue, Value};
///
/// assert_eq!(5_i32.to_value(), Value::from(5_i64));
/// assert_eq!("news".to_value(), String::from("news").to_value());
/// assert_eq!(None::<String>.to_value(), Value::Null);
/// assert_eq!((&7_i64, &String::from("a")).to_value(), Value::from((7, "a")));
///
/// /// A status column mapped to a Rust enum.
/// enum Status { Draft, Live }
///
/// impl ToValue for Status {
///     fn to_value(&self) -> Value {
///         Value::from(match self { Status::Draft => "draft", Status::Live => "live" })
///     }
/// }
/// assert_eq!(Status::Live.to_value(), Value::from("live"));
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be the value of a cache id or scope field",
    label = "this field's type does not implement `ToValue`",
    note = "implement `matroska_diesel::ToValue` for it; floating-point numbers are deliberately \
            unsupported (equality on them is fragile)"
)]
pub trait ToValue {
    /// This field's value.
    fn to_value(&self) -> Value;
}

macro_rules! to_value_via_from {
    ($($t:ty),*) => {$(
        impl ToValue for $t {
            fn to_value(&self) -> Value {
                Value::from(*self)
            }
        }
    )*};
}
to_value_via_from!(
    i8, i16, i32, i64, i128, isize, u8, u16, u32, u64, usize, bool, char, SystemTime
);

impl ToValue for str {
    fn to_value(&self) -> Value {
        Value::from(self)
    }
}

impl ToValue for String {
    fn to_value(&self) -> Value {
        Value::from(self.as_str())
    }
}

impl ToValue for Value {
    fn to_value(&self) -> Value {
        self.clone()
    }
}

impl<T: ToValue + ?Sized> ToValue for &T {
    fn to_value(&self) -> Value {
        (**self).to_value()
    }
}

impl<T: ToValue + ?Sized> ToValue for Box<T> {
    fn to_value(&self) -> Value {
        (**self).to_value()
    }
}

impl<T: ToValue + ?Sized> ToValue for Rc<T> {
    fn to_value(&self) -> Value {
        (**self).to_value()
    }
}

impl<T: ToValue + ?Sized> ToValue for Arc<T> {
    fn to_value(&self) -> Value {
        (**self).to_value()
    }
}

impl<T: ToValue> ToValue for Option<T> {
    fn to_value(&self) -> Value {
        self.as_ref().map_or(Value::Null, ToValue::to_value)
    }
}

macro_rules! to_value_tuple {
    ($($name:ident),+) => {
        impl<$($name: ToValue),+> ToValue for ($($name,)+) {
            #[allow(non_snake_case)]
            fn to_value(&self) -> Value {
                let ($($name,)+) = self;
                Value::Tuple(vec![$($name.to_value()),+])
            }
        }
    };
}
to_value_tuple!(A);
to_value_tuple!(A, B);
to_value_tuple!(A, B, C);
to_value_tuple!(A, B, C, D);

#[cfg(feature = "chrono")]
mod chrono_impls {
    use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone};

    use super::{ToValue, Value};

    /// A timestamp without time zone, as PostgreSQL's `timestamp`: microseconds since the epoch,
    /// read as UTC.
    impl ToValue for NaiveDateTime {
        fn to_value(&self) -> Value {
            Value::timestamp_micros(self.and_utc().timestamp_micros())
        }
    }

    /// A point in time, as PostgreSQL's `timestamptz`: the same value in every time zone.
    impl<Tz: TimeZone> ToValue for DateTime<Tz> {
        fn to_value(&self) -> Value {
            Value::timestamp_micros(self.timestamp_micros())
        }
    }

    /// A date, as text `YYYY-MM-DD`.
    impl ToValue for NaiveDate {
        fn to_value(&self) -> Value {
            Value::from(self.format("%Y-%m-%d").to_string())
        }
    }
}

#[cfg(feature = "uuid")]
impl ToValue for uuid::Uuid {
    /// Text, lowercase and hyphenated: `67e55044-10b1-426f-9247-bb680e5fe0c8`.
    fn to_value(&self) -> Value {
        Value::from(self.hyphenated().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_and_owned_values_agree() {
        let text = String::from("news");
        assert_eq!(text.to_value(), ToValue::to_value(&&text));
        assert_eq!(text.to_value(), "news".to_value());
        assert_eq!(Some(&text).to_value(), text.to_value());
        assert_eq!(Arc::new(3_u8).to_value(), 3_i64.to_value());
        assert_eq!(None::<i32>.to_value(), Value::Null);
        assert_ne!(1.to_value(), "1".to_value());
        assert_ne!(1.to_value(), true.to_value());
    }

    #[test]
    fn composite_keys_are_tuples() {
        let key = (&1_i32, &String::from("x"));
        assert_eq!(key.to_value(), Value::from((1, "x")));
        assert_eq!((1,).to_value(), Value::Tuple(vec![Value::Int(1)]));
    }

    #[cfg(feature = "chrono")]
    #[test]
    fn chrono_values() {
        use chrono::{DateTime, NaiveDate, Utc};

        let t = DateTime::<Utc>::from_timestamp(1, 500_000).unwrap();
        assert_eq!(t.to_value(), Value::timestamp_micros(1_000_500));
        assert_eq!(t.naive_utc().to_value(), t.to_value());
        let d = NaiveDate::from_ymd_opt(2024, 2, 29).unwrap();
        assert_eq!(d.to_value(), Value::from("2024-02-29"));
    }

    #[cfg(feature = "uuid")]
    #[test]
    fn uuid_values() {
        let id = uuid::Uuid::from_u128(0x67e5_5044_10b1_426f_9247_bb68_0e5f_e0c8);
        assert_eq!(
            id.to_value(),
            Value::from("67e55044-10b1-426f-9247-bb680e5fe0c8")
        );
    }
}
