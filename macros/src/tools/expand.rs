//! Semantic checks across tools, then code generation (which cannot fail: everything that can
//! be wrong was reported by `check`).

use std::collections::HashMap;

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::{ItemImpl, Type, spanned::Spanned};

use super::{
    RoleSet, docs,
    item::{ParamKind, ToolMethod},
};
use crate::{
    errors::{Errors, with_hint},
    suggest,
};

/// Access rules, role names and tool-name uniqueness.
pub(crate) fn check(tools: &[ToolMethod], roles: Option<&RoleSet>, errors: &mut Errors) {
    let mut names: HashMap<String, &ToolMethod> = HashMap::new();
    for tool in tools {
        let args = &tool.args;
        let (name, name_span) = tool.tool_name();
        if !args.has_errors
            && args.role.is_none()
            && args.scopes.is_empty()
            && args.public.is_none()
        {
            errors.push(with_hint(
                tool.attr_span,
                format!("tool `{name}` declares no access rule"),
                Some(
                    "help: tools are denied by default: add `role = \"...\"`, `scope = \"...\"` or `public` to `#[mcp_tool]`"
                        .into(),
                ),
            ));
        }
        if let Some(public) = args.public {
            if args.role.is_some() {
                errors.push(syn::Error::new(
                    public,
                    "`public` conflicts with `role`: a public tool requires no role",
                ));
            }
            if !args.scopes.is_empty() {
                errors.push(syn::Error::new(
                    public,
                    "`public` conflicts with `scope`: a public tool requires no scope",
                ));
            }
        }
        if let Some(role) = &args.role {
            check_role(&role.value, role.span, roles, errors);
        }
        if args.name.is_none()
            && let Err(message) = crate::rules::check_tool_name(&name)
        {
            errors.push(with_hint(
                name_span,
                message,
                Some("help: set a valid name with `#[mcp_tool(name = \"...\")]`".into()),
            ));
        }
        if let Some(first) = names.get(&name) {
            errors.push(with_hint(
                name_span,
                format!("duplicate tool name `{name}`"),
                Some(format!(
                    "note: `{}` already declares a tool with this name",
                    first.ident
                )),
            ));
        } else {
            names.insert(name, tool);
        }
    }
}

fn check_role(role: &str, span: Span, roles: Option<&RoleSet>, errors: &mut Errors) {
    let Some(set) = roles else {
        errors.push(with_hint(
            span,
            format!("`role = \"{role}\"` needs a roles enum"),
            Some("help: declare one with `#[derive(Roles)]` and name it: `#[mcp_tools(roles = Role)]`".into()),
        ));
        return;
    };
    if set.names.iter().any(|n| n == role) {
        return;
    }
    let enum_name = set
        .path
        .segments
        .last()
        .map(|s| s.ident.to_string())
        .unwrap_or_default();
    let candidates: Vec<&str> = set.names.iter().map(String::as_str).collect();
    errors.push(with_hint(
        span,
        format!("unknown role `{role}` for `{enum_name}`"),
        suggest::hint(role, &candidates, &format!("the roles of `{enum_name}`")),
    ));
}

pub(crate) fn generate(
    item: &ItemImpl,
    tools: &[ToolMethod],
    roles: Option<&RoleSet>,
) -> TokenStream {
    let self_ty = &item.self_ty;
    let roles_ty = match roles {
        Some(set) => {
            let path = &set.path;
            quote!(#path)
        }
        None => quote!(::mcp_gatekeeper::NoRoles),
    };
    let private = quote!(::mcp_gatekeeper::__private);
    let mut defs = Vec::new();
    let mut fns = Vec::new();
    for tool in tools {
        let role_index =
            tool.args.role.as_ref().and_then(|role| {
                roles.and_then(|set| set.names.iter().position(|n| *n == role.value))
            });
        let guard = match role_index {
            Some(i) => quote!(<#roles_ty as #private::RoleAt<#i>>::Marker),
            None => quote!(#private::NoRoleGuard<#roles_ty>),
        };
        let call_fn = format_ident!("__mcp_gatekeeper_call_{}", tool.ident);
        let schema_fn = format_ident!("__mcp_gatekeeper_schema_{}", tool.ident);
        defs.push(tool_def(tool, role_index, &call_fn, &schema_fn));
        fns.push(call_function(tool, &guard, &call_fn));
        fns.push(schema_function(tool, &schema_fn));
    }
    let instructions = match docs::join_paragraphs(&docs::doc_lines(&item.attrs)) {
        Some(text) => quote!(::core::option::Option::Some(#text.into())),
        None => quote!(::core::option::Option::None),
    };
    quote! {
        const _: () = {
            #[automatically_derived]
            impl #private::McpTools for #self_ty {
                type Roles = #roles_ty;

                fn __tool_defs() -> #private::Vec<#private::ToolDef<Self>> {
                    ::std::vec![#(#defs),*]
                }

                fn __server_info() -> #private::ServerInfo {
                    #private::ServerInfo {
                        name: ::core::env!("CARGO_PKG_NAME").into(),
                        version: ::core::env!("CARGO_PKG_VERSION").into(),
                        instructions: #instructions,
                    }
                }
            }

            #[automatically_derived]
            #[doc(hidden)]
            impl #self_ty {
                #(#fns)*
            }
        };
    }
}

fn option<T: quote::ToTokens>(value: Option<T>) -> TokenStream {
    match value {
        Some(v) => quote!(::core::option::Option::Some(#v)),
        None => quote!(::core::option::Option::None),
    }
}

fn tool_def(
    tool: &ToolMethod,
    role_index: Option<usize>,
    call_fn: &syn::Ident,
    schema_fn: &syn::Ident,
) -> TokenStream {
    let private = quote!(::mcp_gatekeeper::__private);
    let args = &tool.args;
    let (name, _) = tool.tool_name();
    let title = option(args.title.as_deref());
    let description = option(tool.description.as_deref());
    let role = option(role_index);
    let scopes = args.scopes.iter().map(|s| &s.value);
    let public = args.public.is_some();
    let rate = option(args.rate.map(|r| {
        let (calls, secs) = (r.calls, r.per_secs);
        quote!(#private::Rate { calls: #calls, per: ::core::time::Duration::from_secs(#secs) })
    }));
    let read_only = option(args.read_only);
    let destructive = option(args.destructive);
    let idempotent = option(args.idempotent);
    let open_world = option(args.open_world);
    let output = output_type(tool);
    // The same tokens as the call function's conversion, so that a return type that is not a
    // tool result gives one error, not one per use.
    let output_schema = quote_spanned! {output_span(tool)=>
        <#output as #private::IntoToolResult>::output_schema
    };
    quote! {
        #private::ToolDef {
            name: #name,
            title: #title,
            description: #description,
            role: #role,
            scopes: &[#(#scopes),*],
            public: #public,
            rate: #rate,
            hints: #private::ToolHints {
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

fn output_type(tool: &ToolMethod) -> TokenStream {
    match &tool.output {
        Some(ty) => quote!(#ty),
        None => quote!(()),
    }
}

fn output_span(tool: &ToolMethod) -> Span {
    tool.output.as_ref().map_or(tool.ident.span(), |t| t.span())
}

/// The input schema: the `Args<T>` struct's, or an object with one property per plain
/// argument.
fn schema_function(tool: &ToolMethod, schema_fn: &syn::Ident) -> TokenStream {
    let private = quote!(::mcp_gatekeeper::__private);
    let mut properties = Vec::new();
    for param in &tool.params {
        match &param.kind {
            ParamKind::ArgsStruct { inner } => {
                let assert = assert_argument(inner);
                return quote! {
                    fn #schema_fn() -> #private::Result<#private::Arc<#private::JsonObject>, ::std::string::String> {
                        #assert
                        #private::input_schema::<#inner>()
                    }
                };
            }
            ParamKind::Json {
                name, description, ..
            } => {
                let ty = &param.ty;
                let description = option(description.as_deref());
                let assert = assert_argument(ty);
                properties.push(quote! {
                    #assert
                    schema.property::<#ty>(#name, #description);
                });
            }
            ParamKind::Extractor => {}
        }
    }
    quote! {
        fn #schema_fn() -> #private::Result<#private::Arc<#private::JsonObject>, ::std::string::String> {
            let mut schema = #private::ObjectSchema::new();
            #(#properties)*
            schema.build()
        }
    }
}

/// A check that points at the user's type when it is not a valid argument.
fn assert_argument(ty: &Type) -> TokenStream {
    quote_spanned! {ty.span()=>
        ::mcp_gatekeeper::__private::assert_argument::<#ty>();
    }
}

/// The generated call: extract every parameter, run the handler, convert its result.
fn call_function(tool: &ToolMethod, guard: &TokenStream, call_fn: &syn::Ident) -> TokenStream {
    let private = quote!(::mcp_gatekeeper::__private);
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
            let mut #arguments = #private::Arguments::new(&mut #call);
        });
    }
    for (i, param) in tool.params.iter().enumerate() {
        let local = format_ident!("__p{}", i, span = Span::mixed_site());
        let ty = &param.ty;
        let value = match &param.kind {
            // The schema function asserts the same, with the same tokens: rustc reports a type
            // that is not an argument once, and not again for `take`, at the same span.
            ParamKind::Json { name, .. } => {
                let assert = assert_argument(ty);
                quote! {{ #assert #arguments.take::<#ty>(#name) }}
            }
            // Deserialised here rather than through `FromToolCall`, so that a `T` that is not an
            // argument is reported once, at `T`, like a plain parameter.
            ParamKind::ArgsStruct { inner } => {
                let assert = assert_argument(inner);
                quote! {{
                    #assert
                    #call.arguments::<#inner>().map(::mcp_gatekeeper::Args)
                }}
            }
            ParamKind::Extractor => {
                quote_spanned! {ty.span()=>
                    <#ty as #private::FromToolCall<#guard>>::from_tool_call(&mut #call)
                }
            }
        };
        extract.push(quote! {
            let #local = match #value {
                #private::Result::Ok(value) => value,
                #private::Result::Err(rejection) => return rejection.into_result(),
            };
        });
        locals.push(local);
    }
    if has_json {
        extract.push(quote! {
            if let #private::Result::Err(rejection) = #arguments.finish() {
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
    let result = quote_spanned!(Span::mixed_site()=> result);
    let convert = quote_spanned! {output_span(tool)=>
        <#output as #private::IntoToolResult>::into_tool_result(#result)
    };
    let boxed = quote_spanned! {tool.ident.span()=>
        #private::Box::pin(async move {
            #(#extract)*
            let #result: #output = #invoke;
            #convert
        })
    };
    quote! {
        #[doc(hidden)]
        #[allow(non_snake_case, clippy::all)]
        fn #call_fn<'a>(
            #this: &'a Self,
            mut #call: #private::ToolCall<'a>,
        ) -> #private::BoxFuture<'a, #private::Result<#private::CallToolResponse, #private::ErrorData>> {
            #boxed
        }
    }
}
