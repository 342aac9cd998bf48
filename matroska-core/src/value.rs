//! Typed values of ids and scope fields.

use std::time::{SystemTime, UNIX_EPOCH};

/// The value of an id or of a scope field, in a canonical typed form.
///
/// Values of different types never compare equal, so they never give the same tag: the integer
/// `1`, the text `"1"` and `true` are three different values. All integer types map to
/// [`Value::Int`], so `5_i32` and `5_u64` are the same value. `None` is [`Value::Null`], a value of
/// its own. Floating-point numbers are deliberately not supported: equality on them is fragile
/// (store money as integer cents, or use text).
///
/// # Examples
///
/// ```
/// use matroska_core::Value;
///
/// assert_eq!(Value::from(5_i32), Value::from(5_u64));
/// assert_ne!(Value::from(1), Value::from("1"));
/// assert_eq!(Value::from(None::<&str>), Value::Null);
/// assert_eq!(Value::from((7, "a")), Value::Tuple(vec![Value::Int(7), Value::from("a")]));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Value {
    /// SQL `NULL`, Rust `None`.
    Null,
    /// A boolean.
    Bool(bool),
    /// Any integer type.
    Int(i128),
    /// Text.
    Text(String),
    /// A point in time, in microseconds since the Unix epoch (UTC). PostgreSQL stores timestamps
    /// with microsecond precision; finer precision is truncated.
    Timestamp(i64),
    /// A composite value, such as a composite primary key.
    Tuple(Vec<Self>),
}

impl Value {
    /// A timestamp from microseconds since the Unix epoch.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, UNIX_EPOCH};
    /// use matroska_core::Value;
    ///
    /// let t = UNIX_EPOCH + Duration::from_secs(1);
    /// assert_eq!(Value::from(t), Value::timestamp_micros(1_000_000));
    /// ```
    pub fn timestamp_micros(micros: i64) -> Self {
        Self::Timestamp(micros)
    }
}

macro_rules! from_int {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Self {
                Self::Int(i128::from(v))
            }
        }
    )*};
}
from_int!(i8, i16, i32, i64, i128, u8, u16, u32, u64);

impl From<isize> for Value {
    fn from(v: isize) -> Self {
        // isize is at most 64 bits on every supported platform.
        Self::Int(v as i128)
    }
}

impl From<usize> for Value {
    fn from(v: usize) -> Self {
        Self::Int(v as i128)
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Self::Bool(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Self::Text(v.to_owned())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Self::Text(v)
    }
}

impl From<&String> for Value {
    fn from(v: &String) -> Self {
        Self::Text(v.clone())
    }
}

impl From<char> for Value {
    fn from(v: char) -> Self {
        Self::Text(v.to_string())
    }
}

impl From<SystemTime> for Value {
    fn from(v: SystemTime) -> Self {
        let micros = match v.duration_since(UNIX_EPOCH) {
            Ok(after) => i64::try_from(after.as_micros()).unwrap_or(i64::MAX),
            Err(before) => i64::try_from(before.duration().as_micros()).map_or(i64::MIN, |m| -m),
        };
        Self::Timestamp(micros)
    }
}

impl<T: Into<Self>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Self::Null, Into::into)
    }
}

impl From<&Self> for Value {
    fn from(v: &Self) -> Self {
        v.clone()
    }
}

macro_rules! from_tuple {
    ($($name:ident),+) => {
        impl<$($name: Into<Value>),+> From<($($name,)+)> for Value {
            #[allow(non_snake_case)]
            fn from(($($name,)+): ($($name,)+)) -> Self {
                Self::Tuple(vec![$($name.into()),+])
            }
        }
    };
}
from_tuple!(A, B);
from_tuple!(A, B, C);
from_tuple!(A, B, C, D);

/// The values an extractor of [`Scopes::describe`](crate::Scopes::describe) returns for the `N`
/// fields it declares: a single value for one field, a tuple for several, `()` for none.
///
/// The number of values is checked at compile time against the number of field names.
///
/// # Examples
///
/// ```
/// use matroska_core::{IntoValues, Value};
///
/// assert_eq!("news".into_values(), [Value::from("news")]);
/// assert_eq!(("news", true).into_values(), [Value::from("news"), Value::from(true)]);
/// ```
pub trait IntoValues<const N: usize> {
    /// The values, in the order of the declared field names.
    fn into_values(self) -> [Value; N];
}

impl IntoValues<0> for () {
    fn into_values(self) -> [Value; 0] {
        []
    }
}

impl<T: Into<Value>> IntoValues<1> for T {
    fn into_values(self) -> [Value; 1] {
        [self.into()]
    }
}

macro_rules! into_values_tuple {
    ($n:literal; $($name:ident),+) => {
        impl<$($name: Into<Value>),+> IntoValues<$n> for ($($name,)+) {
            #[allow(non_snake_case)]
            fn into_values(self) -> [Value; $n] {
                let ($($name,)+) = self;
                [$($name.into()),+]
            }
        }
    };
}
into_values_tuple!(2; A, B);
into_values_tuple!(3; A, B, C);
into_values_tuple!(4; A, B, C, D);
into_values_tuple!(5; A, B, C, D, E);
into_values_tuple!(6; A, B, C, D, E, F);
into_values_tuple!(7; A, B, C, D, E, F, G);
into_values_tuple!(8; A, B, C, D, E, F, G, H);

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn integers_unify_across_widths_but_not_with_text_or_bool() {
        assert_eq!(Value::from(5_u8), Value::from(5_i64));
        assert_eq!(Value::from(u64::MAX), Value::Int(i128::from(u64::MAX)));
        assert_ne!(Value::from(1), Value::from(true));
        assert_ne!(Value::from(0), Value::Null);
    }

    #[test]
    fn timestamps_before_and_after_the_epoch() {
        let after = UNIX_EPOCH + Duration::from_millis(1500);
        let before = UNIX_EPOCH - Duration::from_micros(2);
        assert_eq!(Value::from(after), Value::Timestamp(1_500_000));
        assert_eq!(Value::from(before), Value::Timestamp(-2));
    }
}
