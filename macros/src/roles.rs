//! `#[derive(Roles)]`: the roles enum, its hierarchy, one marker type per role, and the
//! callback macro through which `#[mcp_tools(roles = ...)]` learns the role names.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::{Data, DeriveInput, Ident, LitStr, Visibility, spanned::Spanned};

use crate::{errors::Errors, suggest};

/// At most 64 roles: the hierarchy is a `u64` bit mask per role.
const MAX_ROLES: usize = 64;

struct Role {
    ident: Ident,
    name: String,
    /// `#[role(includes(...))]` entries, as written.
    includes: Vec<LitOrIdent>,
}

/// A role named in `includes(...)`: `viewer` or `"viewer"`.
struct LitOrIdent {
    name: String,
    span: Span,
}

pub(crate) fn derive(input: TokenStream) -> TokenStream {
    let input: DeriveInput = match syn::parse2(input) {
        Ok(input) => input,
        Err(e) => return e.into_compile_error(),
    };
    match expand(&input) {
        Ok(tokens) => tokens,
        Err(e) => e.into_compile_error(),
    }
}

fn expand(input: &DeriveInput) -> syn::Result<TokenStream> {
    let roles = parse(input)?;
    let includes = hierarchy(&roles)?;
    Ok(generate(input, &roles, &includes))
}

fn parse(input: &DeriveInput) -> syn::Result<Vec<Role>> {
    let Data::Enum(data) = &input.data else {
        return Err(syn::Error::new(
            input.ident.span(),
            "`#[derive(Roles)]` works on a fieldless enum, one variant per role",
        ));
    };
    let mut errors = Errors::default();
    if !input.generics.params.is_empty() {
        errors.push(syn::Error::new_spanned(
            &input.generics,
            "a roles enum cannot be generic",
        ));
    }
    if data.variants.is_empty() {
        errors.push(syn::Error::new(
            input.ident.span(),
            "a roles enum needs at least one role",
        ));
    }
    if data.variants.len() > MAX_ROLES {
        errors.push(syn::Error::new(
            input.ident.span(),
            format!("a roles enum can declare at most {MAX_ROLES} roles"),
        ));
    }
    let mut roles = Vec::new();
    for variant in &data.variants {
        if !variant.fields.is_empty() {
            errors.push(syn::Error::new(
                variant.fields.span(),
                "a role cannot carry data: remove the fields",
            ));
        }
        let mut role = Role {
            ident: variant.ident.clone(),
            name: snake_case(&variant.ident.to_string()),
            includes: Vec::new(),
        };
        for attr in variant.attrs.iter().filter(|a| a.path().is_ident("role")) {
            errors.take(attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("includes") {
                    meta.parse_nested_meta(|inner| {
                        let ident = inner.path.require_ident()?;
                        role.includes.push(LitOrIdent {
                            name: ident.to_string(),
                            span: ident.span(),
                        });
                        Ok(())
                    })
                } else if meta.path.is_ident("name") {
                    let name: LitStr = meta.value()?.parse()?;
                    if name.value().is_empty() || name.value().contains(char::is_whitespace) {
                        return Err(syn::Error::new(
                            name.span(),
                            "a role name is a non-empty word without spaces",
                        ));
                    }
                    role.name = name.value();
                    Ok(())
                } else {
                    let key = meta
                        .path
                        .get_ident()
                        .map(ToString::to_string)
                        .unwrap_or_default();
                    Err(crate::errors::with_hint(
                        meta.path.span(),
                        format!("unknown `#[role]` argument `{key}`"),
                        suggest::hint(&key, &["includes", "name"], "accepted arguments"),
                    ))
                }
            }));
        }
        roles.push(role);
    }
    for (i, role) in roles.iter().enumerate() {
        if let Some(first) = roles[..i].iter().find(|r| r.name == role.name) {
            errors.push(syn::Error::new(
                role.ident.span(),
                format!(
                    "role name `{}` is used by `{}` already",
                    role.name, first.ident
                ),
            ));
        }
    }
    errors.finish()?;
    Ok(roles)
}

/// The transitive closure of the hierarchy as one bit mask per role. Declaration order when no
/// role says `includes(...)`; otherwise exactly the declared inclusions.
fn hierarchy(roles: &[Role]) -> syn::Result<Vec<u64>> {
    let names: Vec<&str> = roles.iter().map(|r| r.name.as_str()).collect();
    let explicit = roles.iter().any(|r| !r.includes.is_empty());
    let mut direct = vec![0u64; roles.len()];
    let mut errors = Errors::default();
    for (i, role) in roles.iter().enumerate() {
        direct[i] |= 1 << i;
        if !explicit {
            direct[i] |= (1u64 << i) - 1;
            continue;
        }
        for included in &role.includes {
            match names.iter().position(|n| *n == included.name) {
                Some(j) if j == i => errors.push(syn::Error::new(
                    included.span,
                    format!("role `{}` cannot include itself", role.name),
                )),
                Some(j) => direct[i] |= 1 << j,
                None => errors.push(crate::errors::with_hint(
                    included.span,
                    format!("unknown role `{}` in `includes`", included.name),
                    suggest::hint(&included.name, &names, "the roles"),
                )),
            }
        }
    }
    errors.finish()?;
    let mut closure = direct.clone();
    for k in 0..roles.len() {
        for i in 0..roles.len() {
            if closure[i] & (1 << k) != 0 {
                closure[i] |= closure[k];
            }
        }
    }
    for (i, role) in roles.iter().enumerate() {
        for (j, other) in roles.iter().enumerate() {
            if i != j && closure[i] & (1 << j) != 0 && closure[j] & (1 << i) != 0 {
                let span = role
                    .includes
                    .iter()
                    .find(|inc| inc.name == other.name)
                    .map_or(role.ident.span(), |inc| inc.span);
                let via = if direct[i] & (1 << j) != 0 {
                    String::new()
                } else {
                    " (through other roles)".into()
                };
                return Err(syn::Error::new(
                    span,
                    format!(
                        "role hierarchy has a cycle: `{}` includes `{}`{via}, which includes `{}` again\n= note: a hierarchy must be acyclic; remove one of the `includes`",
                        role.name, other.name, role.name
                    ),
                ));
            }
        }
    }
    Ok(closure)
}

fn generate(input: &DeriveInput, roles: &[Role], includes: &[u64]) -> TokenStream {
    let ty = &input.ident;
    let vis = &input.vis;
    let idents: Vec<&Ident> = roles.iter().map(|r| &r.ident).collect();
    let names: Vec<&str> = roles.iter().map(|r| r.name.as_str()).collect();
    let indices: Vec<usize> = (0..roles.len()).collect();
    let type_name = ty.to_string();
    let markers = roles.iter().enumerate().map(|(i, role)| {
        let marker = &role.ident;
        let doc = format!(
            "Role `{}` of [`{ty}`] as a type, for `Granted<{marker}>` (declared by `#[derive(Roles)]`).",
            role.name
        );
        let included = (0..roles.len())
            .filter(|j| includes[i] & (1 << j) != 0)
            .map(|j| &roles[j].ident);
        // Spanned at the variant: when a guard does not grant a `Granted<...>`, rustc lists
        // what it does grant, and shows the role's declaration rather than the derive.
        let includes_impls = included.map(|included| {
            quote_spanned! {marker.span()=>
                impl ::mcp_gatekeeper::Includes<#included> for #marker {}
            }
        });
        // Also the declaration, which rustc shows for "not implemented for `Lead`".
        let vis: TokenStream = vis
            .to_token_stream()
            .into_iter()
            .map(|mut token| {
                token.set_span(marker.span());
                token
            })
            .collect();
        let declaration = quote_spanned! {marker.span()=>
            #[doc = #doc]
            #vis enum #marker {}
        };
        quote! {
            #declaration
            impl ::mcp_gatekeeper::RoleMarker for #marker {
                type Roles = #ty;
                const INDEX: usize = #i;
            }
            impl ::mcp_gatekeeper::Guard for #marker {
                type Roles = #ty;
            }
            impl ::mcp_gatekeeper::__private::RoleAt<#i> for #ty {
                type Marker = #marker;
            }
            #(#includes_impls)*
        }
    });
    let callback = format_ident!("__mcp_gatekeeper_roles_of_{}", ty);
    let reexport_vis = match vis {
        Visibility::Inherited => quote!(),
        _ => quote!(pub(crate)),
    };
    quote! {
        impl ::mcp_gatekeeper::Roles for #ty {
            const ALL: &'static [Self] = &[#(Self::#idents),*];
            const NAMES: &'static [&'static str] = &[#(#names),*];
            const INCLUDES: &'static [u64] = &[#(#includes),*];
            const TYPE_NAME: &'static str = #type_name;
            fn index(&self) -> usize {
                match self {
                    #(Self::#idents => #indices,)*
                }
            }
        }
        #(#markers)*
        // `#[mcp_tools(roles = #ty)]` invokes this macro (it shares the enum's name, in the
        // macro namespace) to learn the role names at compile time.
        #[doc(hidden)]
        macro_rules! #callback {
            ($($tokens:tt)*) => {
                ::mcp_gatekeeper::__private::__mcp_tools_with_roles! {
                    @roles [#(#names)*] $($tokens)*
                }
            };
        }
        #[doc(hidden)]
        #[allow(unused_imports)]
        #reexport_vis use #callback as #ty;
    }
}

/// `SuperAdmin` → `super_admin`.
pub(crate) fn snake_case(name: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = name.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_uppercase() {
            let prev_lower =
                i > 0 && (chars[i - 1].is_lowercase() || chars[i - 1].is_ascii_digit());
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            if i > 0 && (prev_lower || (next_lower && chars[i - 1].is_uppercase())) {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snake_case_names() {
        assert_eq!(snake_case("Viewer"), "viewer");
        assert_eq!(snake_case("SuperAdmin"), "super_admin");
        assert_eq!(snake_case("HTTPAdmin"), "http_admin");
        assert_eq!(snake_case("Level2Ops"), "level2_ops");
    }

    fn closure_of(src: TokenStream) -> syn::Result<Vec<u64>> {
        let input: DeriveInput = syn::parse2(src).unwrap();
        hierarchy(&parse(&input)?)
    }

    #[test]
    fn declaration_order_is_the_default_hierarchy() {
        let c = closure_of(quote!(
            enum R {
                Viewer,
                Editor,
                Admin,
            }
        ))
        .unwrap();
        assert_eq!(c, vec![0b001, 0b011, 0b111]);
    }

    #[test]
    fn explicit_includes_are_closed_transitively() {
        let c = closure_of(quote!(
            enum R {
                Reader,
                Writer,
                #[role(includes(writer))]
                Lead,
                #[role(includes(lead, reader))]
                Admin,
            }
        ))
        .unwrap();
        assert_eq!(c, vec![0b0001, 0b0010, 0b0110, 0b1111]);
    }

    #[test]
    fn cycles_and_unknown_roles_are_errors() {
        let err = closure_of(quote!(
            enum R {
                #[role(includes(b))]
                A,
                #[role(includes(a))]
                B,
            }
        ))
        .unwrap_err();
        assert!(err.to_string().contains("cycle"), "{err}");
        let err = closure_of(quote!(
            enum R {
                #[role(includes(admn))]
                Lead,
                Admin,
            }
        ))
        .unwrap_err();
        assert!(err.to_string().contains("did you mean `admin`"), "{err}");
    }
}
