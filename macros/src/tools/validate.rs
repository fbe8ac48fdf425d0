//! The rules a `#[mcp_tools]` impl block and its tools must follow (thiserror's `valid.rs`):
//! everything that parsed but means something invalid. Parsing (`attr`, `item`) reports only
//! malformed syntax, and generation (`expand`) runs only when nothing here failed. Every check
//! runs, so one build shows every mistake.

use std::collections::HashMap;

use proc_macro2::Span;
use syn::{ItemImpl, Pat, Type};

use super::{
    RoleSet,
    item::{self, ParamKind, Receiver, ToolMethod},
};
use crate::{
    errors::{Errors, with_hint},
    rules, suggest,
};

/// The impl block as a whole: inherent, not generic, with at least one tool.
pub(crate) fn block(item: &ItemImpl, tools: &[ToolMethod], errors: &mut Errors) {
    if let Some((_, trait_path, _)) = &item.trait_ {
        errors.push(syn::Error::new_spanned(
            trait_path,
            "`#[mcp_tools]` goes on an inherent impl block (`impl MyTools`), not a trait impl",
        ));
    }
    if !item.generics.params.is_empty() {
        errors.push(syn::Error::new_spanned(
            &item.generics,
            "`#[mcp_tools]` does not support generic impl blocks",
        ));
    }
    if tools.is_empty() && errors.is_empty() {
        errors.push(syn::Error::new(
            item.impl_token.span,
            "this `#[mcp_tools]` impl block declares no tool\n= help: mark each tool method with `#[mcp_tool(...)]`",
        ));
    }
}

/// Every tool, in declaration order, then the names they share.
pub(crate) fn tools(tools: &[ToolMethod], roles: Option<&RoleSet>, errors: &mut Errors) {
    let mut names: HashMap<String, &ToolMethod> = HashMap::new();
    for tool in tools {
        access(tool, roles, errors);
        scopes(tool, errors);
        name(tool, errors);
        signature(tool, errors);
        params(tool, errors);
        let (name, name_span) = tool.tool_name();
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

/// Deny by default: a role, a scope or `public`, and `public` alone.
fn access(tool: &ToolMethod, roles: Option<&RoleSet>, errors: &mut Errors) {
    let args = &tool.args;
    if !args.has_errors && args.role.is_none() && args.scopes.is_empty() && args.public.is_none() {
        let (name, _) = tool.tool_name();
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
}

/// A role literal names a role of the enum (decision 1: the names come from its callback).
fn check_role(role: &str, span: Span, roles: Option<&RoleSet>, errors: &mut Errors) {
    let Some(set) = roles else {
        errors.push(with_hint(
            span,
            format!("`role = \"{role}\"` needs a roles enum"),
            Some("help: declare one with `#[derive(Roles)]` and name it: `#[mcp_tools(roles = Role)]`".into()),
        ));
        return;
    };
    // The enum had errors of its own: its names may be incomplete, and a tool naming a role
    // it meant to declare must not add a second error.
    if !set.checked || set.names.iter().any(|n| n == role) {
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

/// RFC 6749 scope tokens; `scope = "a b"` declares two, as OAuth's `scope` parameter does.
fn scopes(tool: &ToolMethod, errors: &mut Errors) {
    for lit in &tool.args.scopes {
        if lit.value.trim().is_empty() {
            errors.push(syn::Error::new(
                lit.span,
                "empty scope: name at least one scope",
            ));
            continue;
        }
        for scope in lit.value.split(' ').filter(|s| !s.is_empty()) {
            if let Err(message) = rules::check_scope(scope) {
                errors.push(syn::Error::new(lit.span, message));
            }
        }
    }
}

/// MCP tool names, whether written (`name = "..."`) or taken from the method.
fn name(tool: &ToolMethod, errors: &mut Errors) {
    let (name, span) = tool.tool_name();
    let Err(message) = rules::check_tool_name(&name) else {
        return;
    };
    let error = match tool.args.name {
        Some(_) => syn::Error::new(span, message),
        None => with_hint(
            span,
            message,
            Some("help: set a valid name with `#[mcp_tool(name = \"...\")]`".into()),
        ),
    };
    errors.push(error);
}

/// `&self`, no generics, no variadics.
fn signature(tool: &ToolMethod, errors: &mut Errors) {
    if let Some(generics) = &tool.generics {
        errors.push(syn::Error::new_spanned(
            generics,
            "a tool method cannot be generic: its arguments and result need one concrete schema",
        ));
    }
    if let Some(variadic) = tool.variadic {
        errors.push(syn::Error::new(variadic, "a tool cannot be variadic"));
    }
    match &tool.receiver {
        Receiver::Shared => {}
        Receiver::Other(receiver) => errors.push(syn::Error::new_spanned(
            receiver,
            "a tool method takes `&self`: tools run concurrently, so they cannot take `self` or `&mut self`",
        )),
        Receiver::Missing(span) => errors.push(syn::Error::new(
            *span,
            "a tool method takes `&self` as its first parameter",
        )),
    }
}

/// Plain names for JSON arguments, at most one `Args<T>` of an object type and not mixed with
/// plain arguments, and `Granted<...>` only where a role is checked.
fn params(tool: &ToolMethod, errors: &mut Errors) {
    let args = &tool.args;
    let mut args_struct: Option<&Type> = None;
    let mut json = false;
    for param in &tool.params {
        match &param.kind {
            ParamKind::ArgsStruct { inner } => {
                if args_struct.replace(&param.ty).is_some() {
                    errors.push(syn::Error::new_spanned(
                        &param.ty,
                        "a tool takes at most one `Args<T>` parameter",
                    ));
                }
                check_object_type(inner, errors);
            }
            ParamKind::Extractor => {
                if args.role.is_none() && !args.has_errors && item::is_granted(&param.ty) {
                    let (tool, fix) = if args.public.is_some() {
                        ("a `public` tool", "replace `public` with")
                    } else {
                        ("a tool without `role = \"...\"`", "add")
                    };
                    errors.push(syn::Error::new_spanned(
                        &param.ty,
                        format!(
                            "{tool} checks no role, so it cannot take `Granted<...>`\n= help: {fix} `role = \"...\"` of a role that includes this one, or remove the parameter"
                        ),
                    ));
                }
            }
            ParamKind::Json { .. } => {
                json = true;
                if !matches!(&param.pat, Pat::Ident(p) if p.subpat.is_none()) {
                    errors.push(syn::Error::new_spanned(
                        &param.pat,
                        "a tool argument must be a plain name (`key: String`): its name is the JSON argument's name",
                    ));
                }
            }
        }
    }
    if let (Some(ty), true) = (args_struct, json) {
        errors.push(syn::Error::new_spanned(
            ty,
            "a tool takes either plain arguments or one `Args<T>`, not both",
        ));
    }
}

/// `Args<T>` must be a JSON object. Types that are certainly not (numbers, strings, sequences,
/// tuples, `Option`) are refused here, at the type; the rest is checked when the server is
/// built, from the real schema.
fn check_object_type(inner: &Type, errors: &mut Errors) {
    /// Type names that never serialise as a JSON object.
    const NOT_OBJECTS: &[&str] = &[
        "bool", "char", "str", "String", "u8", "u16", "u32", "u64", "u128", "usize", "i8", "i16",
        "i32", "i64", "i128", "isize", "f32", "f64", "Vec", "VecDeque", "HashSet", "BTreeSet",
        "Option", "Box", "Cow",
    ];
    let not_object = match inner {
        Type::Tuple(_) | Type::Array(_) | Type::Slice(_) | Type::Reference(_) => true,
        _ => item::last_segment(inner).is_some_and(|s| NOT_OBJECTS.iter().any(|n| s.ident == n)),
    };
    if not_object {
        errors.push(syn::Error::new_spanned(
            inner,
            "`Args<T>` needs a struct with named fields: a tool's arguments are a JSON object\n= help: declare a struct with one field per argument, or take the arguments as plain parameters",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use syn::parse_quote;

    /// Every message `validate` has for `item`, with the roles `viewer` and `admin`.
    fn messages(mut item: ItemImpl) -> Vec<String> {
        let mut errors = Errors::default();
        let tools = super::super::collect_tools(&mut item, None, &mut errors);
        assert!(errors.is_empty(), "parse errors");
        let roles = RoleSet {
            path: parse_quote!(Role),
            names: vec!["viewer".into(), "admin".into()],
            checked: true,
        };
        block(&item, &tools, &mut errors);
        self::tools(&tools, Some(&roles), &mut errors);
        match errors.finish() {
            Ok(()) => Vec::new(),
            Err(error) => error.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn a_valid_block_passes() {
        let item = parse_quote! {
            impl Tools {
                #[mcp_tool(role = "admin", scope = "a b")]
                async fn wipe(&self, _proof: Granted<Admin>, key: String) {}
            }
        };
        assert_eq!(messages(item), Vec::<String>::new());
    }

    #[test]
    fn every_rule_of_every_tool_is_reported() {
        let item = parse_quote! {
            impl Tools {
                #[mcp_tool(rate = 10)]
                fn no_rule(&self) {}
                #[mcp_tool(public, role = "admn", scope = "")]
                fn conflicts(&self) {}
                #[mcp_tool(scope = "a\"b", name = "no_rule")]
                fn renamed(&mut self, (a, b): (u8, u8)) {}
                #[mcp_tool(public)]
                fn proof(&self, _proof: Granted<Admin>) {}
            }
        };
        let messages = messages(item);
        let expected = [
            "tool `no_rule` declares no access rule",
            "`public` conflicts with `role`",
            "`public` conflicts with `scope`",
            "unknown role `admn` for `Role`",
            "empty scope",
            "invalid scope `a\"b`",
            "a tool method takes `&self`",
            "a tool argument must be a plain name",
            "duplicate tool name `no_rule`",
            "a `public` tool checks no role, so it cannot take `Granted<...>`",
        ];
        assert_eq!(messages.len(), expected.len(), "{messages:#?}");
        for (message, expected) in messages.iter().zip(expected) {
            assert!(message.starts_with(expected), "{message:?} vs {expected:?}");
        }
    }

    #[test]
    fn an_invalid_roles_enum_checks_no_role_names() {
        let mut item: ItemImpl = parse_quote! {
            impl Tools {
                #[mcp_tool(role = "anything")]
                fn read(&self) {}
            }
        };
        let mut errors = Errors::default();
        let tools = super::super::collect_tools(&mut item, None, &mut errors);
        let roles = RoleSet {
            path: parse_quote!(Role),
            names: Vec::new(),
            checked: false,
        };
        self::tools(&tools, Some(&roles), &mut errors);
        assert!(errors.is_empty());
    }
}
