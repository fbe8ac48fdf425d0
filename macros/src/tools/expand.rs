//! Code generation, which cannot fail: everything that can be wrong was reported by
//! `validate`, and nothing here runs when it found a mistake.
//!
//! An impl block gets two impls: `McpTools` (from `#[mcp_tools]` itself, always, so code that
//! serves the tools compiles whatever else went wrong) and `ToolTable<Roles>` (the tools), from
//! whichever expansion knows the role names: `#[mcp_tools]` without roles, else the roles
//! enum's callback.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::{ItemImpl, Path, Type, spanned::Spanned};

use super::{
    RoleSet, docs,
    item::{ParamKind, ToolMethod},
};
use crate::paths::{Paths, located_at};

/// `impl McpTools for T`, taking the tool table from `ToolTable<R>` for the roles enum `R`.
///
/// `R`'s table comes from the callback of `#[derive(Roles)]`; when `R` has no such derive, the
/// callback never runs and the one error is the unimplemented `ToolTable<R>`, worded by its
/// `#[diagnostic::on_unimplemented]` and shown at `R` (both uses share that span, so rustc
/// reports the missing impl once).
///
/// Nothing for a generic impl block: that is an error of its own, and an impl for an unbound
/// `T` would only add more.
pub(crate) fn mcp_tools_impl(item: &ItemImpl, roles: Option<&Path>, paths: &Paths) -> TokenStream {
    if !item.generics.params.is_empty() {
        return TokenStream::new();
    }
    let Paths {
        mcp_tools,
        tool_def,
        server_info,
        ..
    } = paths;
    let self_ty = &item.self_ty;
    let (roles_ty, span) = match roles {
        Some(path) => (quote!(#path), path.span()),
        None => (paths.no_roles.clone(), Span::call_site()),
    };
    let table = located_at(&paths.tool_table, span);
    let roles_assoc = quote_spanned!(span=> <Self as #table<#roles_ty>>::Roles);
    let tool_defs = quote_spanned!(span=> <Self as #table<#roles_ty>>::tool_defs());
    let instructions = match docs::join_paragraphs(&docs::doc_lines(&item.attrs)) {
        Some(text) => quote!(::core::option::Option::Some(#text.into())),
        None => quote!(::core::option::Option::None),
    };
    paths.block(quote! {
        #[automatically_derived]
        impl #mcp_tools for #self_ty {
            type Roles = #roles_assoc;

            fn __tool_defs() -> ::std::vec::Vec<#tool_def<Self>> {
                #tool_defs
            }

            fn __server_info() -> #server_info {
                #server_info {
                    name: ::core::env!("CARGO_PKG_NAME").into(),
                    version: ::core::env!("CARGO_PKG_VERSION").into(),
                    instructions: #instructions,
                }
            }
        }
    })
}

/// `impl ToolTable<R> for T`: one table entry, one call function and one schema function per
/// tool.
pub(crate) fn tool_table(
    item: &ItemImpl,
    tools: &[ToolMethod],
    roles: Option<&RoleSet>,
    paths: &Paths,
) -> TokenStream {
    let self_ty = &item.self_ty;
    let roles_ty = roles_type(roles, paths);
    let Paths {
        tool_table,
        tool_def,
        role_at,
        no_role_guard,
        ..
    } = paths;
    let mut defs = Vec::new();
    let mut fns = Vec::new();
    for tool in tools {
        let role_index =
            tool.args.role.as_ref().and_then(|role| {
                roles.and_then(|set| set.names.iter().position(|n| *n == role.value))
            });
        let guard = match role_index {
            Some(i) => quote!(<#roles_ty as #role_at<#i>>::Marker),
            None => quote!(#no_role_guard<#roles_ty>),
        };
        let call_fn = format_ident!("__mcp_gatekeeper_call_{}", tool.ident);
        let schema_fn = format_ident!("__mcp_gatekeeper_schema_{}", tool.ident);
        defs.push(table_entry(tool, role_index, &call_fn, &schema_fn, paths));
        fns.push(call_function(tool, &guard, &call_fn, paths));
        fns.push(schema_function(tool, &schema_fn, paths));
    }
    paths.block(quote! {
        #[automatically_derived]
        impl #tool_table<#roles_ty> for #self_ty {
            type Roles = #roles_ty;

            fn tool_defs() -> ::std::vec::Vec<#tool_def<Self>> {
                ::std::vec![#(#defs),*]
            }
        }

        #[automatically_derived]
        #[doc(hidden)]
        impl #self_ty {
            #(#fns)*
        }
    })
}

/// The roles enum's path, or `NoRoles`.
pub(crate) fn roles_type(roles: Option<&RoleSet>, paths: &Paths) -> TokenStream {
    match roles {
        Some(set) => {
            let path = &set.path;
            quote!(#path)
        }
        None => paths.no_roles.clone(),
    }
}

/// `Some(value)` or `None`, as an expression.
fn option<T: quote::ToTokens>(value: Option<T>) -> TokenStream {
    match value {
        Some(v) => quote!(::core::option::Option::Some(#v)),
        None => quote!(::core::option::Option::None),
    }
}

/// One tool's `ToolDef`.
fn table_entry(
    tool: &ToolMethod,
    role_index: Option<usize>,
    call_fn: &syn::Ident,
    schema_fn: &syn::Ident,
    paths: &Paths,
) -> TokenStream {
    let Paths {
        tool_def,
        tool_hints,
        rate,
        into_tool_result,
        ..
    } = paths;
    let args = &tool.args;
    let (name, _) = tool.tool_name();
    let title = option(args.title.as_deref());
    let description = option(tool.description.as_deref());
    let role = option(role_index);
    let scopes = args.scope_tokens();
    let public = args.public.is_some();
    let rate = option(args.rate.map(|r| {
        let (calls, secs) = (r.calls, r.per_secs);
        quote!(#rate { calls: #calls, per: ::core::time::Duration::from_secs(#secs) })
    }));
    let concurrency = option(args.concurrency);
    let read_only = option(args.read_only);
    let destructive = option(args.destructive);
    let idempotent = option(args.idempotent);
    let open_world = option(args.open_world);
    let output = output_type(tool);
    // The same tokens as the call function's conversion, so that a return type that is not a
    // tool result gives one error, not one per use.
    let span = output_span(tool);
    let into_tool_result = located_at(into_tool_result, span);
    let output_schema = quote_spanned! {span=>
        <#output as #into_tool_result>::output_schema
    };
    quote! {
        #tool_def {
            name: #name,
            title: #title,
            description: #description,
            role: #role,
            scopes: &[#(#scopes),*],
            public: #public,
            rate: #rate,
            concurrency: #concurrency,
            hints: #tool_hints {
                read_only: #read_only,
                destructive: #destructive,
                idempotent: #idempotent,
                open_world: #open_world,
            },
            input_schema: Self::#schema_fn,
            output_schema: #output_schema,
            call: Self::#call_fn,
        }
    }
}

/// The handler's return type (`()` when none is written).
fn output_type(tool: &ToolMethod) -> TokenStream {
    match &tool.output {
        Some(ty) => quote!(#ty),
        None => quote!(()),
    }
}

/// Where errors about the return type point: the type, or the method's name.
fn output_span(tool: &ToolMethod) -> Span {
    tool.output.as_ref().map_or(tool.ident.span(), |t| t.span())
}

/// The input schema: the `Args<T>` struct's, or an object with one property per plain
/// argument.
fn schema_function(tool: &ToolMethod, schema_fn: &syn::Ident, paths: &Paths) -> TokenStream {
    let Paths {
        json_object,
        input_schema,
        object_schema,
        ..
    } = paths;
    let mut properties = Vec::new();
    for param in &tool.params {
        match &param.kind {
            ParamKind::ArgsStruct { inner } => {
                let assert = assert_argument(inner, paths);
                return quote! {
                    fn #schema_fn() -> ::core::result::Result<::std::sync::Arc<#json_object>, ::std::string::String> {
                        #assert
                        #input_schema::<#inner>()
                    }
                };
            }
            ParamKind::Json {
                name, description, ..
            } => {
                let ty = &param.ty;
                let description = option(description.as_deref());
                let assert = assert_argument(ty, paths);
                properties.push(quote! {
                    #assert
                    schema.property::<#ty>(#name, #description);
                });
            }
            ParamKind::Extractor => {}
        }
    }
    quote! {
        fn #schema_fn() -> ::core::result::Result<::std::sync::Arc<#json_object>, ::std::string::String> {
            let mut schema = #object_schema::new();
            #(#properties)*
            schema.build()
        }
    }
}

/// A check that points at the user's type when it is not a valid argument.
fn assert_argument(ty: &Type, paths: &Paths) -> TokenStream {
    let assert = located_at(&paths.assert_argument, ty.span());
    quote_spanned! {ty.span()=>
        #assert::<#ty>();
    }
}

/// The generated call: extract every parameter, run the handler, convert its result.
fn call_function(
    tool: &ToolMethod,
    guard: &TokenStream,
    call_fn: &syn::Ident,
    paths: &Paths,
) -> TokenStream {
    let Paths {
        arguments: arguments_ty,
        args,
        from_tool_call,
        into_tool_result,
        box_future,
        tool_call,
        call_tool_response,
        error_data,
        ..
    } = paths;
    let call = quote_spanned!(Span::mixed_site()=> call);
    let arguments = quote_spanned!(Span::mixed_site()=> arguments);
    let mut extract = Vec::new();
    let mut locals = Vec::new();
    let has_json = tool
        .params
        .iter()
        .any(|p| matches!(p.kind, ParamKind::Json { .. }));
    if has_json {
        extract.push(quote! {
            let mut #arguments = #arguments_ty::new(&mut #call);
        });
    }
    for (i, param) in tool.params.iter().enumerate() {
        let local = format_ident!("__p{}", i, span = Span::mixed_site());
        let ty = &param.ty;
        let value = match &param.kind {
            // The schema function asserts the same, with the same tokens: rustc reports a type
            // that is not an argument once, and not again for `take`, at the same span.
            ParamKind::Json { name, .. } => {
                let assert = assert_argument(ty, paths);
                quote! {{ #assert #arguments.take::<#ty>(#name) }}
            }
            // Deserialised here rather than through `FromToolCall`, so that a `T` that is not an
            // argument is reported once, at `T`, like a plain parameter.
            ParamKind::ArgsStruct { inner } => {
                let assert = assert_argument(inner, paths);
                quote! {{
                    #assert
                    #call.arguments::<#inner>().map(#args)
                }}
            }
            ParamKind::Extractor => {
                let from_tool_call = located_at(from_tool_call, ty.span());
                quote_spanned! {ty.span()=>
                    <#ty as #from_tool_call<#guard>>::from_tool_call(&mut #call)
                }
            }
        };
        extract.push(quote! {
            let #local = match #value {
                ::core::result::Result::Ok(value) => value,
                ::core::result::Result::Err(rejection) => return rejection.into_result(),
            };
        });
        locals.push(local);
    }
    if has_json {
        extract.push(quote! {
            if let ::core::result::Result::Err(rejection) = #arguments.finish() {
                return rejection.into_result();
            }
        });
    }
    let method = &tool.ident;
    let this = quote_spanned!(Span::mixed_site()=> this);
    let invoke = if tool.is_async {
        quote!(Self::#method(#this, #(#locals),*).await)
    } else {
        quote!(Self::#method(#this, #(#locals),*))
    };
    let output = output_type(tool);
    // One hygiene context for the local, whatever contexts the method name and the return
    // type come from (they differ when a `macro_rules!` writes part of the signature).
    let result_local = quote_spanned!(Span::mixed_site()=> result);
    let span = output_span(tool);
    let into_tool_result = located_at(into_tool_result, span);
    let convert = quote_spanned! {span=>
        <#output as #into_tool_result>::into_tool_result(#result_local)
    };
    let body = quote_spanned! {tool.ident.span()=>
        ::std::boxed::Box::pin(async move {
            #(#extract)*
            let #result_local: #output = #invoke;
            #convert
        })
    };
    quote! {
        #[doc(hidden)]
        #[allow(non_snake_case, clippy::all)]
        fn #call_fn<'a>(
            #this: &'a Self,
            mut #call: #tool_call<'a>,
        ) -> #box_future<'a, ::core::result::Result<#call_tool_response, #error_data>> {
            #body
        }
    }
}
