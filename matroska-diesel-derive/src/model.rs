//! The validated input of a derive: everything expansion needs, with every error already found.

use proc_macro2::Span;
use syn::spanned::Spanned as _;
use syn::{
    Data, DataStruct, DeriveInput, Fields, FieldsNamed, GenericArgument, Generics, Ident, Path,
    PathArguments, Type,
};

use crate::attrs::{DieselAttrs, MatroskaAttrs, reject_field_attrs, unraw};

/// The most fields one scope can have (the arity of the core's `IntoValues`).
const MAX_SCOPE_FIELDS: usize = 8;

/// Which derive is being expanded.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Derive {
    CacheModel,
    CacheDeps,
}

pub(crate) struct Field {
    pub(crate) ident: Ident,
    pub(crate) ty: Type,
    /// The column name (`#[diesel(column_name = ...)]`, or the field name).
    pub(crate) column: String,
}

impl Field {
    /// The column as an identifier in the table module (`r#type` for the column `type`).
    pub(crate) fn column_ident(&self, span: Span) -> Ident {
        syn::parse_str::<Ident>(&self.column).map_or_else(
            |_| Ident::new_raw(&self.column, span),
            |mut ident| {
                ident.set_span(span);
                ident
            },
        )
    }

    /// Whether the field is an `Option` (a nullable column).
    pub(crate) fn is_option(&self) -> bool {
        let Type::Path(path) = &self.ty else {
            return false;
        };
        path.path.segments.last().is_some_and(|last| {
            last.ident == "Option"
                && matches!(&last.arguments, PathArguments::AngleBracketed(args)
                    if args.args.len() == 1 && matches!(args.args[0], GenericArgument::Type(_)))
        })
    }
}

/// One `scope(...)`: indexes into [`Model::fields`], each with the span of its name in the
/// attribute, so that type errors point there.
pub(crate) struct Scope {
    pub(crate) fields: Vec<(usize, Span)>,
}

pub(crate) struct Model {
    pub(crate) ident: Ident,
    pub(crate) vis: syn::Visibility,
    pub(crate) generics: Generics,
    pub(crate) krate: Path,
    pub(crate) kind: String,
    /// The Diesel table module (`crate::schema::articles`).
    pub(crate) table: Path,
    pub(crate) fields: Vec<Field>,
    pub(crate) primary_key: Vec<String>,
    pub(crate) scopes: Vec<Scope>,
    pub(crate) nested: Vec<(usize, Span)>,
}

impl Model {
    pub(crate) fn from_input(input: &DeriveInput, derive: Derive) -> syn::Result<Self> {
        let named = named_fields(input)?;
        if derive == Derive::CacheModel && !input.generics.params.is_empty() {
            return Err(syn::Error::new(
                input.generics.span(),
                "`CacheModel` does not support generic models (its scopes are a static)",
            ));
        }
        let attrs = MatroskaAttrs::parse(&input.attrs)?;
        let diesel = DieselAttrs::parse(&input.attrs)?;
        if derive == Derive::CacheDeps {
            check_cache_deps_attrs(input, &attrs)?;
        }
        let fields = fields(named)?;
        let find = |ident: &Ident| -> syn::Result<usize> {
            fields
                .iter()
                .position(|f| f.ident == *ident)
                .ok_or_else(|| {
                    syn::Error::new(
                        ident.span(),
                        format!("no field `{ident}` in `{}`", input.ident),
                    )
                })
        };
        let scopes = scopes(&attrs, &fields, &find)?;
        let mut nested = Vec::new();
        for ident in &attrs.nested {
            let index = find(ident)?;
            if nested.iter().any(|(i, _)| *i == index) {
                return Err(syn::Error::new(
                    ident.span(),
                    format!("field `{ident}` is nested twice"),
                ));
            }
            nested.push((index, ident.span()));
        }

        let table = diesel.table_name.clone().unwrap_or_else(|| {
            let name = infer_table_name(&unraw(&input.ident));
            Path::from(Ident::new(&name, input.ident.span()))
        });
        let kind = match &attrs.kind {
            Some(kind) => kind.value(),
            None => table
                .segments
                .last()
                .map_or_else(String::new, |s| unraw(&s.ident)),
        };
        // Diesel's `primary_key(...)` names fields; the default is `id`.
        let primary_key = diesel.primary_key.map_or_else(
            || vec!["id".to_owned()],
            |keys| {
                keys.iter()
                    .map(|key| {
                        fields
                            .iter()
                            .find(|f| f.ident == *key)
                            .map_or_else(|| unraw(key), |f| f.column.clone())
                    })
                    .collect()
            },
        );
        let krate = attrs
            .krate
            .unwrap_or_else(|| syn::parse_quote!(::matroska_diesel));

        Ok(Self {
            ident: input.ident.clone(),
            vis: input.vis.clone(),
            generics: input.generics.clone(),
            krate,
            kind,
            table,
            fields,
            primary_key,
            scopes,
            nested,
        })
    }
}

/// The named fields of a struct, or an error pointing at what the input is instead.
fn named_fields(input: &DeriveInput) -> syn::Result<&FieldsNamed> {
    match &input.data {
        Data::Struct(DataStruct {
            fields: Fields::Named(named),
            ..
        }) => Ok(named),
        Data::Struct(s) => Err(s.struct_token.span()),
        Data::Enum(e) => Err(e.enum_token.span()),
        Data::Union(u) => Err(u.union_token.span()),
    }
    .map_err(|span| {
        syn::Error::new(
            span,
            "the matroska derives apply to structs with named fields",
        )
    })
}

fn fields(named: &FieldsNamed) -> syn::Result<Vec<Field>> {
    let mut fields = Vec::new();
    for field in &named.named {
        reject_field_attrs(&field.attrs)?;
        let Some(ident) = field.ident.clone() else {
            continue;
        };
        let column = DieselAttrs::parse(&field.attrs)?
            .column_name
            .map_or_else(|| unraw(&ident), |(name, _)| name);
        fields.push(Field {
            ident,
            ty: field.ty.clone(),
            column,
        });
    }
    Ok(fields)
}

/// `#[derive(CacheDeps)]` takes `nested` (and `crate`) only, and needs `nested`.
fn check_cache_deps_attrs(input: &DeriveInput, attrs: &MatroskaAttrs) -> syn::Result<()> {
    if let Some(kind) = &attrs.kind {
        return Err(syn::Error::new(
            kind.span(),
            "`kind` applies to `#[derive(CacheModel)]` only",
        ));
    }
    if let Some(scope) = attrs.scopes.first() {
        return Err(syn::Error::new(
            scope.span,
            "`scope` applies to `#[derive(CacheModel)]` only",
        ));
    }
    if attrs.nested.is_empty() {
        return Err(syn::Error::new(
            input.ident.span(),
            "`#[derive(CacheDeps)]` needs the fields to depend on: \
             `#[matroska(nested(field, ...))]`",
        ));
    }
    Ok(())
}

/// Validates the `scope(...)` attributes: known fields, none twice, no set twice.
fn scopes(
    attrs: &MatroskaAttrs,
    fields: &[Field],
    find: &impl Fn(&Ident) -> syn::Result<usize>,
) -> syn::Result<Vec<Scope>> {
    let mut scopes: Vec<Scope> = Vec::new();
    let mut seen_sets: Vec<Vec<String>> = Vec::new();
    for scope in &attrs.scopes {
        if scope.fields.is_empty() {
            return Err(syn::Error::new(
                scope.span,
                "a scope needs at least one field: `scope(category, published)`",
            ));
        }
        if scope.fields.len() > MAX_SCOPE_FIELDS {
            return Err(syn::Error::new(
                scope.span,
                format!("a scope has at most {MAX_SCOPE_FIELDS} fields"),
            ));
        }
        let mut indexes = Vec::new();
        for ident in &scope.fields {
            let index = find(ident)?;
            if indexes.iter().any(|(i, _)| *i == index) {
                return Err(syn::Error::new(
                    ident.span(),
                    format!("field `{ident}` appears twice in this scope"),
                ));
            }
            indexes.push((index, ident.span()));
        }
        let mut set: Vec<String> = indexes
            .iter()
            .map(|(i, _)| fields[*i].column.clone())
            .collect();
        set.sort();
        if seen_sets.contains(&set) {
            return Err(syn::Error::new(
                scope.span,
                "this scope is declared twice (the order of its fields does not matter)",
            ));
        }
        seen_sets.push(set);
        scopes.push(Scope { fields: indexes });
    }
    Ok(scopes)
}

/// Diesel's default table name for a struct: snake case, plus `s` (`BlogPost` -> `blog_posts`).
fn infer_table_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out.push('s');
    out
}

#[cfg(test)]
mod tests {
    use super::infer_table_name;

    #[test]
    fn table_names_are_inferred_like_diesel() {
        assert_eq!(infer_table_name("Article"), "articles");
        assert_eq!(infer_table_name("BlogPost"), "blog_posts");
        assert_eq!(infer_table_name("user"), "users");
    }
}
