//! Parsing of `#[matroska(...)]` and of the few `#[diesel(...)]` keys the derives read.

use proc_macro2::Span;
use syn::meta::ParseNestedMeta;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned as _;
use syn::{Attribute, Expr, ExprLit, Ident, Lit, LitStr, Meta, Path, Token};

/// A `scope(field, ...)` as written.
pub(crate) struct ScopeAttr {
    /// The span of the `scope` keyword.
    pub(crate) span: Span,
    pub(crate) fields: Vec<Ident>,
}

/// The struct-level `#[matroska(...)]` attributes, merged.
#[derive(Default)]
pub(crate) struct MatroskaAttrs {
    pub(crate) kind: Option<LitStr>,
    pub(crate) scopes: Vec<ScopeAttr>,
    pub(crate) nested: Vec<Ident>,
    pub(crate) krate: Option<Path>,
}

impl MatroskaAttrs {
    pub(crate) fn parse(attrs: &[Attribute]) -> syn::Result<Self> {
        let mut out = Self::default();
        for attr in attrs.iter().filter(|a| a.path().is_ident("matroska")) {
            attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("kind") {
                    let lit: LitStr = meta.value()?.parse()?;
                    if out.kind.is_some() {
                        return Err(meta.error("`kind` is given twice"));
                    }
                    if lit.value().is_empty() {
                        return Err(syn::Error::new(lit.span(), "the kind must not be empty"));
                    }
                    out.kind = Some(lit);
                } else if meta.path.is_ident("scope") {
                    out.scopes.push(ScopeAttr {
                        span: meta.path.span(),
                        fields: field_list(&meta)?,
                    });
                } else if meta.path.is_ident("nested") {
                    out.nested.extend(field_list(&meta)?);
                } else if meta.path.is_ident("crate") {
                    let lit: LitStr = meta.value()?.parse()?;
                    out.krate = Some(lit.parse()?);
                } else {
                    let name = meta
                        .path
                        .get_ident()
                        .map_or_else(|| "?".to_owned(), ToString::to_string);
                    return Err(meta.error(format!(
                        "unknown matroska attribute `{name}`; expected `kind`, `scope`, `nested` \
                         or `crate`"
                    )));
                }
                Ok(())
            })?;
        }
        Ok(out)
    }
}

/// `(a, b, c)`: field names, possibly none.
fn field_list(meta: &ParseNestedMeta<'_>) -> syn::Result<Vec<Ident>> {
    let content;
    syn::parenthesized!(content in meta.input);
    let fields = Punctuated::<Ident, Token![,]>::parse_terminated(&content)?;
    Ok(fields.into_iter().collect())
}

/// Rejects `#[matroska(...)]` on a field: every option is given on the struct.
pub(crate) fn reject_field_attrs(attrs: &[Attribute]) -> syn::Result<()> {
    match attrs.iter().find(|a| a.path().is_ident("matroska")) {
        Some(attr) => Err(syn::Error::new(
            attr.span(),
            "`#[matroska(...)]` goes on the struct, not on a field: \
             write `#[matroska(nested(field))]` or `#[matroska(scope(field))]` there",
        )),
        None => Ok(()),
    }
}

/// The `#[diesel(...)]` keys the derives read; everything else is Diesel's business.
#[derive(Default)]
pub(crate) struct DieselAttrs {
    pub(crate) table_name: Option<Path>,
    pub(crate) primary_key: Option<Vec<Ident>>,
    pub(crate) column_name: Option<(String, Span)>,
}

impl DieselAttrs {
    /// Reads `table_name`, `primary_key` and `column_name`. An attribute that does not parse is
    /// skipped: Diesel's own derives report it.
    pub(crate) fn parse(attrs: &[Attribute]) -> syn::Result<Self> {
        let mut out = Self::default();
        for attr in attrs.iter().filter(|a| a.path().is_ident("diesel")) {
            let Ok(items) = attr.parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated)
            else {
                continue;
            };
            for item in items {
                match item {
                    Meta::NameValue(nv) if nv.path.is_ident("table_name") => {
                        if let Expr::Path(path) = nv.value {
                            out.table_name = Some(path.path);
                        }
                    }
                    Meta::NameValue(nv) if nv.path.is_ident("column_name") => {
                        out.column_name = match nv.value {
                            Expr::Path(path) => path.path.get_ident().map(|i| (unraw(i), i.span())),
                            Expr::Lit(ExprLit {
                                lit: Lit::Str(s), ..
                            }) => Some((s.value(), s.span())),
                            _ => None,
                        };
                    }
                    Meta::List(list) if list.path.is_ident("primary_key") => {
                        let keys =
                            list.parse_args_with(Punctuated::<Ident, Token![,]>::parse_terminated)?;
                        out.primary_key = Some(keys.into_iter().collect());
                    }
                    _ => {}
                }
            }
        }
        Ok(out)
    }
}

/// An identifier's name without a raw prefix (`r#type` is the column `type`).
pub(crate) fn unraw(ident: &Ident) -> String {
    let name = ident.to_string();
    name.strip_prefix("r#").map_or(name.clone(), str::to_owned)
}
