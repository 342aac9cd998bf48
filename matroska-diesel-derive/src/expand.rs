//! Code generation from a validated [`Model`]. Every path is fully qualified and the output is
//! wrapped in an anonymous `const _: () = { ... };` so nothing leaks into the user's namespace.

use proc_macro2::{Ident, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};

use crate::model::{Model, Scope};

/// The field's name, with the span of its mention in the attribute (errors point there).
fn respan(ident: &Ident, span: Span) -> Ident {
    let mut ident = ident.clone();
    ident.set_span(span);
    ident
}

/// Wraps items in an anonymous const block.
fn wrap(items: &TokenStream) -> TokenStream {
    quote! {
        const _: () = {
            #items
        };
    }
}

/// `impl CacheModel`, `impl CacheDeps`, and the typed scope filters.
pub(crate) fn cache_model(model: &Model) -> TokenStream {
    let Model {
        ident,
        krate,
        kind,
        primary_key,
        ..
    } = model;
    let describes = model.scopes.iter().map(|scope| describe(model, scope));
    // Every column is a field `modified` may name (scopes refuse unknown names in strict mode).
    let columns = model.fields.iter().map(|field| &field.column);
    let nested = nested_deps(model);
    let filters = model.scopes.iter().map(|scope| scope_filter(model, scope));
    wrap(&quote! {
        #[automatically_derived]
        impl #krate::CacheModel for #ident {
            const KIND: &'static str = #kind;
            const PRIMARY_KEY: &'static [&'static str] = &[#(#primary_key),*];

            fn cache_scopes() -> &'static #krate::Scopes<Self> {
                static SCOPES: #krate::__private::LazyLock<#krate::Scopes<#ident>> =
                    #krate::__private::LazyLock::new(|| {
                        #krate::Scopes::new(#kind)
                            .id(|row: &#ident| #krate::__private::id_value(row))
                            #(#describes)*
                            .fields(&[#(#columns),*])
                    });
                &SCOPES
            }

            fn id_dep(&self) -> #krate::Dep {
                #krate::Dep::id(
                    <Self as #krate::CacheModel>::KIND,
                    #krate::__private::id_value(self),
                )
            }
        }

        #[automatically_derived]
        impl #krate::CacheDeps for #ident {
            fn collect_deps(&self, deps: &mut #krate::Deps) {
                deps.push(<Self as #krate::CacheModel>::id_dep(self));
                #(#nested)*
            }
        }

        #[automatically_derived]
        impl #ident {
            #(#filters)*
        }
    })
}

/// `impl CacheDeps` for a struct of nested values.
pub(crate) fn cache_deps(model: &Model) -> TokenStream {
    let Model {
        ident,
        krate,
        generics,
        ..
    } = model;
    let mut generics = generics.clone();
    if !generics.params.is_empty() {
        let where_clause = generics.make_where_clause();
        for (index, _) in &model.nested {
            let ty = &model.fields[*index].ty;
            where_clause
                .predicates
                .push(syn::parse_quote!(#ty: #krate::CacheDeps));
        }
    }
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();
    let nested = nested_deps(model);
    wrap(&quote! {
        #[automatically_derived]
        impl #impl_generics #krate::CacheDeps for #ident #ty_generics #where_clause {
            fn collect_deps(&self, deps: &mut #krate::Deps) {
                #(#nested)*
            }
        }
    })
}

fn nested_deps(model: &Model) -> impl Iterator<Item = TokenStream> + '_ {
    let krate = &model.krate;
    model.nested.iter().map(move |(index, span)| {
        let field = respan(&model.fields[*index].ident, *span);
        quote_spanned! {*span=> #krate::CacheDeps::collect_deps(&self.#field, deps); }
    })
}

/// `.describe(["a", "b"], |row| (value(&row.a), value(&row.b)))`
fn describe(model: &Model, scope: &Scope) -> TokenStream {
    let Model { ident, krate, .. } = model;
    let names = scope.fields.iter().map(|(i, _)| &model.fields[*i].column);
    let values: Vec<TokenStream> = scope
        .fields
        .iter()
        .map(|(i, span)| {
            let field = respan(&model.fields[*i].ident, *span);
            quote_spanned! {*span=> #krate::__private::value(&row.#field) }
        })
        .collect();
    let extract = if let [single] = values.as_slice() {
        single.clone()
    } else {
        quote! { (#(#values,)*) }
    };
    quote! {
        .describe([#(#names),*], |row: &#ident| #extract)
    }
}

/// `pub fn scope_a_b(a: impl Into<A>, b: impl Into<B>) -> ScopeFilter<And<Eq<..>, Eq<..>>>`
fn scope_filter(model: &Model, scope: &Scope) -> TokenStream {
    let Model {
        krate, vis, table, ..
    } = model;
    let diesel = quote! { #krate::diesel };
    let fields: Vec<_> = scope
        .fields
        .iter()
        .map(|(i, span)| (&model.fields[*i], *span))
        .collect();
    // Argument names carry the attribute's spans, so that type errors point there.
    let idents: Vec<Ident> = fields
        .iter()
        .map(|(f, span)| respan(&f.ident, *span))
        .collect();
    let name = format_ident!(
        "scope_{}",
        fields
            .iter()
            .map(|(f, _)| f.ident.to_string().trim_start_matches("r#").to_owned())
            .collect::<Vec<_>>()
            .join("_")
    );
    let args = fields.iter().zip(&idents).map(|((f, span), ident)| {
        let ty = &f.ty;
        quote_spanned! {*span=> #ident: impl ::core::convert::Into<#ty> }
    });
    let converts = fields.iter().zip(&idents).map(|((f, span), ident)| {
        let ty = &f.ty;
        quote_spanned! {*span=> let #ident: #ty = ::core::convert::Into::into(#ident); }
    });
    let dep_fields = fields.iter().zip(&idents).map(|((f, span), ident)| {
        let column = &f.column;
        quote_spanned! {*span=> (#column, #krate::__private::value(&#ident)) }
    });
    // One comparison per field: `=` for a plain column, `IS NOT DISTINCT FROM` for an `Option`
    // field, so that `None` selects the NULL rows (which is what the scope of a NULL means).
    let mut exprs = Vec::new();
    let mut types = Vec::new();
    for ((field, span), ident) in fields.iter().zip(&idents) {
        let ty = &field.ty;
        let column = field.column_ident(*span);
        if field.is_option() {
            exprs.push(quote_spanned! {*span=>
                #diesel::expression_methods::PgExpressionMethods::is_not_distinct_from(
                    #table::#column, #ident)
            });
            types.push(quote_spanned! {*span=>
                #diesel::dsl::IsNotDistinctFrom<#table::#column, #ty>
            });
        } else {
            exprs.push(quote_spanned! {*span=>
                #diesel::expression_methods::ExpressionMethods::eq(#table::#column, #ident)
            });
            types.push(quote_spanned! {*span=> #diesel::dsl::Eq<#table::#column, #ty> });
        }
    }
    let mut expr = exprs[0].clone();
    let mut ty = types[0].clone();
    for (next_expr, next_ty) in exprs.iter().zip(&types).skip(1) {
        expr =
            quote! { #diesel::expression_methods::BoolExpressionMethods::and(#expr, #next_expr) };
        ty = quote! { #diesel::dsl::And<#ty, #next_ty> };
    }
    let columns: Vec<&str> = fields.iter().map(|(f, _)| f.column.as_str()).collect();
    let doc = format!(
        "Filters by {} (the scope `{}`), together with the dependency of the list it selects.",
        columns
            .iter()
            .map(|c| format!("`{c}`"))
            .collect::<Vec<_>>()
            .join(" and "),
        columns.join(", "),
    );
    quote! {
        #[doc = #doc]
        #[allow(dead_code, clippy::needless_pass_by_value)]
        #vis fn #name(#(#args),*) -> #krate::ScopeFilter<#ty> {
            #(#converts)*
            let dep = #krate::__private::scope_dep(
                <Self as #krate::CacheModel>::cache_scopes(),
                [#(#dep_fields),*],
            );
            #krate::__private::scope_filter(#expr, dep)
        }
    }
}
