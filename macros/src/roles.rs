//! `#[derive(Roles)]`: the roles enum, its hierarchy, one marker type per role, and the
//! callback macro through which `#[mcp_tools(roles = ...)]` learns the role names.
//!
//! On an error the derive still emits everything other code names (a stand-in `Roles` impl,
//! the markers, the callback), so that the enum's error is the only one: tools guarded by its
//! roles and handlers taking `Granted<...>` add none.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::{Data, DeriveInput, Ident, LitStr, Path, Visibility, spanned::Spanned};

use crate::{
    errors::{Errors, with_hint},
    paths::{self, Paths},
    suggest,
};

/// At most 64 roles: the hierarchy is a `u64` bit mask per role.
const MAX_ROLES: usize = 64;

/// One variant of the roles enum.
struct Role {
    /// The variant, which is also the name of the role's marker type.
    ident: Ident,
    /// How credentials spell the role: snake_case, or `#[role(name = "...")]`.
    name: String,
    /// `#[role(includes(...))]` entries, as written.
    includes: Vec<LitOrIdent>,
}

/// A role named in `includes(...)`: `viewer` or `"viewer"`.
struct LitOrIdent {
    name: String,
    span: Span,
}

/// `#[roles(crate = "...")]` on the enum.
#[derive(Default)]
struct Options {
    /// Where generated code finds the runtime (the same key as `#[mcp_tools(crate = "...")]`).
    krate: Option<Path>,
}

/// `#[derive(Roles)]`: the real expansion, or the stand-ins and the errors.
pub(crate) fn derive(input: TokenStream) -> TokenStream {
    let input: DeriveInput = match syn::parse2(input) {
        Ok(input) => input,
        Err(e) => return e.into_compile_error(),
    };
    let mut errors = Errors::default();
    let options = options(&input, &mut errors);
    let krate = options.krate.as_ref();
    let roles = parse(&input, &mut errors);
    let includes = match errors.is_empty() {
        true => errors.take(hierarchy(&roles)),
        false => None,
    };
    match (includes, errors.finish()) {
        (Some(includes), Ok(())) => generate(&input, &roles, Some(&includes), krate),
        (_, result) => {
            let fallback = generate(&input, &roles, None, krate);
            let error = result.err().map(syn::Error::into_compile_error);
            quote!(#fallback #error)
        }
    }
}

/// The enum's own options, and the `#[role]`/`#[roles]` attributes put on the wrong item.
fn options(input: &DeriveInput, errors: &mut Errors) -> Options {
    let mut options = Options::default();
    for attr in &input.attrs {
        if attr.path().is_ident("role") {
            errors.push(syn::Error::new_spanned(
                attr,
                "`#[role(...)]` goes on a variant; the enum's own options go in `#[roles(...)]`",
            ));
        }
        if !attr.path().is_ident("roles") {
            continue;
        }
        errors.take(attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("crate") {
                let krate = paths::parse_crate(&meta, "roles")?;
                if options.krate.replace(krate).is_some() {
                    return Err(meta.error("duplicate `#[roles]` argument `crate`"));
                }
                Ok(())
            } else {
                let key = meta
                    .path
                    .get_ident()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                Err(with_hint(
                    meta.path.span(),
                    format!("unknown `#[roles]` argument `{key}`"),
                    suggest::hint(&key, &["crate"], "accepted arguments"),
                ))
            }
        }));
    }
    if let Data::Enum(data) = &input.data {
        for attr in data.variants.iter().flat_map(|v| &v.attrs) {
            if attr.path().is_ident("roles") {
                errors.push(syn::Error::new_spanned(
                    attr,
                    "`#[roles(...)]` goes on the enum; a variant takes `#[role(...)]`",
                ));
            }
        }
    }
    options
}

/// Reads every role it can, recording each problem in `errors`.
fn parse(input: &DeriveInput, errors: &mut Errors) -> Vec<Role> {
    let Data::Enum(data) = &input.data else {
        errors.push(syn::Error::new(
            input.ident.span(),
            "`#[derive(Roles)]` works on a fieldless enum, one variant per role",
        ));
        return Vec::new();
    };
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
                } else if meta.path.is_ident("crate") {
                    Err(meta.error("`crate` goes on the enum: `#[roles(crate = \"...\")]`"))
                } else {
                    let key = meta
                        .path
                        .get_ident()
                        .map(ToString::to_string)
                        .unwrap_or_default();
                    Err(with_hint(
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
    roles
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
                None => errors.push(with_hint(
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

/// The `Roles` impl, the markers and the callback. `includes` is the hierarchy; `None` means
/// the enum had errors, and everything is a stand-in: no role values (a variant may have
/// fields), every marker grants every other (so no `Granted<...>` adds an error), and the
/// callback tells `#[mcp_tools]` not to check role names or build a real table.
fn generate(
    input: &DeriveInput,
    roles: &[Role],
    includes: Option<&[u64]>,
    krate: Option<&Path>,
) -> TokenStream {
    let paths = &Paths::new(krate);
    let ty = &input.ident;
    // A generic enum is an error, and an impl naming it without its parameters would add more.
    let impls = input.generics.params.is_empty();
    let names: Vec<&str> = roles.iter().map(|r| r.name.as_str()).collect();
    let declarations = roles
        .iter()
        .filter(|_| impls)
        .map(|role| declaration(input, role));
    let trait_impls = impls.then(|| {
        let roles_impl = roles_impl(input, roles, includes, paths);
        let marker_impls = (0..roles.len()).map(|i| marker_impls(input, roles, i, includes, paths));
        paths.block(quote!(#roles_impl #(#marker_impls)*))
    });
    let callback = format_ident!("__mcp_gatekeeper_roles_of_{}", ty);
    let reexport_vis = match &input.vis {
        Visibility::Inherited => quote!(),
        _ => quote!(pub(crate)),
    };
    let with_roles = Paths::with_roles(krate);
    let mode = match includes {
        Some(_) => quote!(roles),
        None => quote!(invalid_roles),
    };
    quote! {
        #(#declarations)*
        #trait_impls
        // `#[mcp_tools(roles = #ty)]` invokes this macro (it shares the enum's name, in the
        // macro namespace) to learn the role names at compile time.
        #[doc(hidden)]
        macro_rules! #callback {
            ($($tokens:tt)*) => {
                #with_roles! {
                    @#mode [#(#names)*] $($tokens)*
                }
            };
        }
        #[doc(hidden)]
        #[allow(unused_imports)]
        #reexport_vis use #callback as #ty;
    }
}

/// `impl Roles for Enum`.
fn roles_impl(
    input: &DeriveInput,
    roles: &[Role],
    includes: Option<&[u64]>,
    paths: &Paths,
) -> TokenStream {
    let ty = &input.ident;
    let roles_trait = &paths.roles;
    let idents: Vec<&Ident> = roles.iter().map(|r| &r.ident).collect();
    let names: Vec<&str> = roles.iter().map(|r| r.name.as_str()).collect();
    let indices = 0..roles.len();
    let type_name = ty.to_string();
    let (all, includes, index) = match includes {
        Some(includes) => (
            quote!(&[#(Self::#idents),*]),
            quote!(&[#(#includes),*]),
            quote!(match self { #(Self::#idents => #indices,)* }),
        ),
        None => {
            let everything = vec![u64::MAX; roles.len()];
            (quote!(&[]), quote!(&[#(#everything),*]), quote!(0))
        }
    };
    quote! {
        #[automatically_derived]
        impl #roles_trait for #ty {
            const ALL: &'static [Self] = #all;
            const NAMES: &'static [&'static str] = &[#(#names),*];
            const INCLUDES: &'static [u64] = #includes;
            const TYPE_NAME: &'static str = #type_name;
            fn index(&self) -> usize {
                #index
            }
        }
    }
}

/// A role's marker type, declared next to the enum with its visibility.
fn declaration(input: &DeriveInput, role: &Role) -> TokenStream {
    let ty = &input.ident;
    let marker = &role.ident;
    let doc = format!(
        "Role `{}` of [`{ty}`] as a type, for `Granted<{marker}>` (declared by `#[derive(Roles)]`).",
        role.name
    );
    // Spanned at the variant, visibility included: rustc shows this declaration for "not
    // implemented for `Lead`", and it should show the role rather than the derive.
    let vis: TokenStream = input
        .vis
        .to_token_stream()
        .into_iter()
        .map(|mut token| {
            token.set_span(marker.span());
            token
        })
        .collect();
    quote_spanned! {marker.span()=>
        #[doc = #doc]
        #vis enum #marker {}
    }
}

/// What role `i`'s marker is and grants.
fn marker_impls(
    input: &DeriveInput,
    roles: &[Role],
    i: usize,
    includes: Option<&[u64]>,
    paths: &Paths,
) -> TokenStream {
    let Paths {
        role_marker,
        guard,
        role_at,
        includes: includes_trait,
        ..
    } = paths;
    let ty = &input.ident;
    let marker = &roles[i].ident;
    // Spanned at the variant: when a guard does not grant a `Granted<...>`, rustc lists what it
    // does grant, and shows the role's declaration rather than the derive.
    let includes_trait = paths::located_at(includes_trait, marker.span());
    let includes_impls = match includes {
        Some(includes) => {
            let included = (0..roles.len())
                .filter(|j| includes[i] & (1 << j) != 0)
                .map(|j| &roles[j].ident);
            quote_spanned! {marker.span()=>
                #(impl #includes_trait<#included> for #marker {})*
            }
        }
        None => quote_spanned! {marker.span()=>
            impl<M: #role_marker> #includes_trait<M> for #marker {}
        },
    };
    quote! {
        impl #role_marker for #marker {
            type Roles = #ty;
            const INDEX: usize = #i;
        }
        impl #guard for #marker {
            type Roles = #ty;
        }
        impl #role_at<#i> for #ty {
            type Marker = #marker;
        }
        #includes_impls
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
        let mut errors = Errors::default();
        let roles = parse(&input, &mut errors);
        errors.finish()?;
        hierarchy(&roles)
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

    /// Every identifier in `tokens`, groups included.
    fn idents(tokens: TokenStream) -> Vec<String> {
        tokens
            .into_iter()
            .flat_map(|token| match token {
                proc_macro2::TokenTree::Ident(ident) => vec![ident.to_string()],
                proc_macro2::TokenTree::Group(group) => idents(group.stream()),
                _ => Vec::new(),
            })
            .collect()
    }

    #[test]
    fn the_crate_override_replaces_every_runtime_path() {
        for input in [
            quote!(
                #[roles(crate = "my::gk")]
                enum Role {
                    Viewer,
                    Admin,
                }
            ),
            quote!(
                #[roles(crate = "my::gk")]
                enum Role {
                    #[role(includes(x))]
                    Viewer,
                }
            ),
        ] {
            let idents = idents(derive(input));
            assert!(idents.iter().any(|i| i == "RoleAt"));
            assert!(!idents.iter().any(|i| i == "mcp_gatekeeper"));
        }
    }

    #[test]
    fn errors_come_with_stand_ins() {
        let output = derive(quote!(
            enum Role {
                Viewer,
                #[role(includes(admn))]
                Admin {
                    level: u8,
                },
            }
        ));
        let idents = idents(output);
        for expected in [
            "compile_error",
            "Roles",
            "Includes",
            "invalid_roles",
            "Admin",
        ] {
            assert!(idents.iter().any(|i| i == expected), "no {expected}");
        }
    }

    #[test]
    fn misplaced_attributes_are_errors() {
        for (input, message) in [
            (
                quote!(
                    #[role(name = "x")]
                    enum Role {
                        Viewer,
                    }
                ),
                "`#[role(...)]` goes on a variant",
            ),
            (
                quote!(
                    enum Role {
                        #[roles(crate = "x")]
                        Viewer,
                    }
                ),
                "`#[roles(...)]` goes on the enum",
            ),
            (
                quote!(
                    enum Role {
                        #[role(crate = "x")]
                        Viewer,
                    }
                ),
                "`crate` goes on the enum",
            ),
            (
                quote!(
                    #[roles(crat = "x")]
                    enum Role {
                        Viewer,
                    }
                ),
                "unknown `#[roles]` argument `crat`",
            ),
        ] {
            let output = derive(input).to_string();
            assert!(output.contains(message), "{output}");
        }
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
