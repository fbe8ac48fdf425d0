//! Parsing `#[mcp_tools(...)]` and `#[mcp_tool(...)]` arguments into typed models.

use proc_macro2::Span;
use syn::{
    Expr, ExprLit, ExprUnary, Lit, LitBool, LitStr, Path, UnOp, meta::ParseNestedMeta,
    spanned::Spanned,
};

use crate::{
    errors::{Errors, with_hint},
    paths,
    rules::{self, RateSpec},
    suggest,
};

/// `#[mcp_tools(roles = Role, crate = "...")]`.
#[derive(Default)]
pub(crate) struct ToolsArgs {
    pub(crate) roles: Option<Path>,
    /// `crate = "..."`: where generated code finds the runtime.
    pub(crate) krate: Option<Path>,
}

/// The keys `#[mcp_tools(...)]` accepts, for did-you-mean.
const TOOLS_KEYS: &[&str] = &["roles", "crate"];

impl ToolsArgs {
    /// Parses the arguments, recording every problem in `errors` and keeping what did parse:
    /// the fallback expansion still needs the roles enum and the crate path.
    pub(crate) fn parse(tokens: proc_macro2::TokenStream, errors: &mut Errors) -> Self {
        let mut args = ToolsArgs::default();
        let parser = syn::meta::parser(|meta| {
            if meta.path.is_ident("roles") {
                let roles: Path = meta.value()?.parse().map_err(|e: syn::Error| {
                    syn::Error::new(e.span(), "expected the roles enum: `roles = Role`")
                })?;
                set_once(&mut args.roles, roles, &meta, "#[mcp_tools]")
            } else if meta.path.is_ident("crate") {
                let krate = paths::parse_crate(&meta, "mcp_tools")?;
                set_once(&mut args.krate, krate, &meta, "#[mcp_tools]")
            } else {
                Err(unknown_key(&meta, "#[mcp_tools]", TOOLS_KEYS))
            }
        });
        errors.take(syn::parse::Parser::parse2(parser, tokens));
        args
    }
}

/// A string value and where it was written.
#[derive(Clone)]
pub(crate) struct Located<T> {
    pub(crate) value: T,
    pub(crate) span: Span,
}

/// Everything `#[mcp_tool(...)]` can say about one tool.
#[derive(Default)]
pub(crate) struct ToolArgs {
    pub(crate) role: Option<Located<String>>,
    /// Each `scope = "..."` as written (one literal may declare several, space-separated).
    pub(crate) scopes: Vec<Located<String>>,
    pub(crate) public: Option<Span>,
    pub(crate) rate: Option<RateSpec>,
    /// `concurrency = N`: most calls of the tool one caller may have in flight at once.
    pub(crate) concurrency: Option<u32>,
    pub(crate) name: Option<Located<String>>,
    pub(crate) title: Option<String>,
    pub(crate) read_only: Option<bool>,
    pub(crate) destructive: Option<bool>,
    pub(crate) idempotent: Option<bool>,
    pub(crate) open_world: Option<bool>,
    /// The attribute had an error, so what it declares is incomplete: checks of the whole
    /// declaration (such as "no access rule") would only repeat that error.
    pub(crate) has_errors: bool,
}

impl ToolArgs {
    /// Every declared scope token, in order.
    pub(crate) fn scope_tokens(&self) -> impl Iterator<Item = &str> {
        self.scopes
            .iter()
            .flat_map(|lit| lit.value.split(' ').filter(|s| !s.is_empty()))
    }
}

/// The keys `#[mcp_tool(...)]` accepts, for did-you-mean.
pub(crate) const TOOL_KEYS: &[&str] = &[
    "role",
    "scope",
    "public",
    "rate",
    "concurrency",
    "name",
    "title",
    "read_only",
    "destructive",
    "idempotent",
    "open_world",
];

impl ToolArgs {
    /// Parses the attribute, recording every problem in `errors` (so all of them show at once).
    pub(crate) fn parse(attr: &syn::Attribute, errors: &mut Errors) -> Self {
        let mut args = ToolArgs::default();
        if matches!(attr.meta, syn::Meta::Path(_)) {
            return args;
        }
        let result = attr.parse_nested_meta(|meta| {
            let key = meta
                .path
                .get_ident()
                .map(ToString::to_string)
                .unwrap_or_default();
            match key.as_str() {
                "role" => {
                    let lit = string_value(&meta, "role = \"admin\"")?;
                    set_once(&mut args.role, spanned(&lit), &meta, "#[mcp_tool]")
                }
                "scope" => {
                    let lit = string_value(&meta, "scope = \"data:write\"")?;
                    args.scopes.push(spanned(&lit));
                    Ok(())
                }
                "public" => {
                    if meta.input.peek(syn::Token![=]) {
                        return Err(
                            meta.error("`public` takes no value: write `#[mcp_tool(public)]`")
                        );
                    }
                    set_once(&mut args.public, meta.path.span(), &meta, "#[mcp_tool]")
                }
                "rate" => {
                    let rate = rate_value(&meta)?;
                    set_once(&mut args.rate, rate, &meta, "#[mcp_tool]")
                }
                "concurrency" => {
                    let limit = concurrency_value(&meta)?;
                    set_once(&mut args.concurrency, limit, &meta, "#[mcp_tool]")
                }
                "name" => {
                    let lit = string_value(&meta, "name = \"read-data\"")?;
                    set_once(&mut args.name, spanned(&lit), &meta, "#[mcp_tool]")
                }
                "title" => {
                    let lit = string_value(&meta, "title = \"Read data\"")?;
                    set_once(&mut args.title, lit.value(), &meta, "#[mcp_tool]")
                }
                "read_only" => flag(&meta, &mut args.read_only),
                "destructive" => flag(&meta, &mut args.destructive),
                "idempotent" => flag(&meta, &mut args.idempotent),
                "open_world" => flag(&meta, &mut args.open_world),
                _ => Err(unknown_key(&meta, "#[mcp_tool]", TOOL_KEYS)),
            }
        });
        if let Err(error) = result {
            args.has_errors = true;
            errors.push(error);
        }
        args
    }
}

/// A string literal's value and span.
fn spanned(lit: &LitStr) -> Located<String> {
    Located {
        value: lit.value(),
        span: lit.span(),
    }
}

/// Stores the value of a key that may appear once.
fn set_once<T>(
    slot: &mut Option<T>,
    value: T,
    meta: &ParseNestedMeta<'_>,
    attribute: &str,
) -> syn::Result<()> {
    if slot.is_some() {
        let key = meta
            .path
            .get_ident()
            .map(ToString::to_string)
            .unwrap_or_default();
        return Err(syn::Error::new(
            meta.path.span(),
            format!("duplicate `{attribute}` argument `{key}`"),
        ));
    }
    *slot = Some(value);
    Ok(())
}

/// The string literal after `key =`; `example` shows the expected form.
fn string_value(meta: &ParseNestedMeta<'_>, example: &str) -> syn::Result<LitStr> {
    let expr: Expr = meta.value()?.parse()?;
    match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) => Ok(lit),
        other => Err(syn::Error::new(
            other.span(),
            format!("expected a string literal: `{example}`"),
        )),
    }
}

/// `rate = N` (calls per minute) or `rate = "N/unit"`.
fn rate_value(meta: &ParseNestedMeta<'_>) -> syn::Result<RateSpec> {
    let expr: Expr = meta.value()?.parse()?;
    let (result, span) = match &expr {
        Expr::Lit(ExprLit {
            lit: Lit::Int(lit), ..
        }) => {
            if !lit.suffix().is_empty() {
                return Err(syn::Error::new(
                    lit.span(),
                    format!("invalid rate `{lit}`: write the number without a type suffix"),
                ));
            }
            (rules::parse_rate_int(lit.base10_digits()), lit.span())
        }
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) => (rules::parse_rate_str(&lit.value()), lit.span()),
        Expr::Unary(ExprUnary {
            op: UnOp::Neg(_),
            expr: operand,
            ..
        }) => {
            let shown = match &**operand {
                Expr::Lit(ExprLit {
                    lit: Lit::Int(lit), ..
                }) => format!(" `-{lit}`"),
                _ => String::new(),
            };
            return Err(syn::Error::new_spanned(
                &expr,
                format!("rate{shown} must be a positive number of calls"),
            ));
        }
        other => {
            return Err(syn::Error::new_spanned(other, rules::RATE_GRAMMAR));
        }
    };
    result.map_err(|message| syn::Error::new(span, message))
}

/// `concurrency = N`: a positive number of calls.
fn concurrency_value(meta: &ParseNestedMeta<'_>) -> syn::Result<u32> {
    let expr: Expr = meta.value()?.parse()?;
    match &expr {
        Expr::Lit(ExprLit {
            lit: Lit::Int(lit), ..
        }) if lit.suffix().is_empty() => rules::parse_concurrency(lit.base10_digits())
            .map_err(|m| syn::Error::new(lit.span(), m)),
        Expr::Unary(ExprUnary {
            op: UnOp::Neg(_), ..
        }) => Err(syn::Error::new_spanned(
            &expr,
            format!(
                "concurrency `{}` must be a positive number of calls",
                quote::quote!(#expr).to_string().replace(' ', "")
            ),
        )),
        other => Err(syn::Error::new_spanned(other, rules::CONCURRENCY_GRAMMAR)),
    }
}

/// `read_only` or `read_only = true|false`.
fn flag(meta: &ParseNestedMeta<'_>, slot: &mut Option<bool>) -> syn::Result<()> {
    let value = if meta.input.peek(syn::Token![=]) {
        meta.value()?.parse::<LitBool>()?.value
    } else {
        true
    };
    set_once(slot, value, meta, "#[mcp_tool]")
}

/// An unknown key, with a did-you-mean or the list of `known` keys.
fn unknown_key(meta: &ParseNestedMeta<'_>, attribute: &str, known: &[&str]) -> syn::Error {
    let key = meta
        .path
        .get_ident()
        .map(ToString::to_string)
        .unwrap_or_else(|| {
            let path = &meta.path;
            quote::quote!(#path).to_string().replace(' ', "")
        });
    with_hint(
        meta.path.span(),
        format!("unknown `{attribute}` argument `{key}`"),
        suggest::hint(&key, known, "accepted arguments"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use syn::parse_quote;

    fn parse(attr: syn::Attribute) -> (ToolArgs, syn::Result<()>) {
        let mut errors = Errors::default();
        let args = ToolArgs::parse(&attr, &mut errors);
        (args, errors.finish())
    }

    #[test]
    fn all_keys() {
        let (args, result) = parse(parse_quote!(#[mcp_tool(
            role = "admin", scope = "a b", scope = "c", rate = "5/s", name = "n", title = "T",
            read_only, destructive = false
        )]));
        assert!(result.is_ok() && !args.has_errors);
        let scopes: Vec<&str> = args.scope_tokens().collect();
        assert_eq!(scopes, ["a", "b", "c"]);
        assert_eq!(args.scopes.len(), 2);
        assert_eq!(args.role.map(|r| r.value).as_deref(), Some("admin"));
        assert_eq!(args.rate.map(|r| (r.calls, r.per_secs)), Some((5, 1)));
        assert_eq!(
            (args.read_only, args.destructive),
            (Some(true), Some(false))
        );
    }

    #[test]
    fn errors_mark_the_declaration_incomplete() {
        for attr in [
            parse_quote!(#[mcp_tool(rol = "admin")]),
            parse_quote!(#[mcp_tool(scope = 1)]),
            parse_quote!(#[mcp_tool(public = true)]),
            parse_quote!(#[mcp_tool(role = "a", role = "b")]),
        ] {
            let (args, result) = parse(attr);
            assert!(args.has_errors && result.is_err());
        }
        let (_, result) = parse(parse_quote!(#[mcp_tool(role = "a", role = "b")]));
        let message = result.unwrap_err().to_string();
        assert_eq!(message, "duplicate `#[mcp_tool]` argument `role`");
    }

    #[test]
    fn rate_forms_and_errors() {
        let (_, result) = parse(parse_quote!(#[mcp_tool(public, rate = -5)]));
        let message = result.unwrap_err().to_string();
        assert_eq!(message, "rate `-5` must be a positive number of calls");
        let (args, _) = parse(parse_quote!(#[mcp_tool(public, rate = 10)]));
        assert_eq!(args.rate.map(|r| (r.calls, r.per_secs)), Some((10, 60)));
    }

    #[test]
    fn concurrency_forms_and_errors() {
        let (args, result) = parse(parse_quote!(#[mcp_tool(public, concurrency = 2)]));
        assert!(result.is_ok());
        assert_eq!(args.concurrency, Some(2));
        for (attr, expected) in [
            (
                parse_quote!(#[mcp_tool(public, concurrency = 0)]),
                "concurrency `0` allows no calls: use at least 1",
            ),
            (
                parse_quote!(#[mcp_tool(public, concurrency = -1)]),
                "concurrency `-1` must be a positive number of calls",
            ),
            (
                parse_quote!(#[mcp_tool(public, concurrency = "2")]),
                rules::CONCURRENCY_GRAMMAR,
            ),
            (
                parse_quote!(#[mcp_tool(public, concurrency = 2u8)]),
                rules::CONCURRENCY_GRAMMAR,
            ),
        ] {
            let (args, result): (ToolArgs, _) = parse(attr);
            assert!(args.has_errors);
            assert_eq!(result.unwrap_err().to_string(), expected);
        }
    }
}
