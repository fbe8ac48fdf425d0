//! Roles, their hierarchy, and the two extractors that carry authorization into a handler:
//! [`Caller`] (who is calling) and [`Granted`] (proof that the guard checked a role).

use std::{fmt, marker::PhantomData, sync::Arc};

use crate::Principal;

/// A set of roles with a hierarchy, usually derived: `#[derive(Roles)] enum Role { Viewer,
/// Editor, Admin }`.
///
/// Each role has a snake_case name (how credentials spell it: `"viewer"`) and an index (its
/// declaration position). The hierarchy says which roles a role *includes*: by default the
/// declaration order (each role includes every role declared before it), or an explicit
/// `#[role(includes(...))]` on the variants for non-linear hierarchies. Inclusion is reflexive
/// and transitive; the derive rejects cycles at compile time.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a set of roles",
    label = "not a roles enum",
    note = "declare roles with `#[derive(mcp_gatekeeper::Roles)]` on a fieldless enum"
)]
pub trait Roles: Sized + Send + Sync + 'static {
    /// Every role, in declaration order (`ALL[i].index() == i`).
    const ALL: &'static [Self];
    /// The name of every role, in declaration order.
    const NAMES: &'static [&'static str];
    /// Row `i` is the set of role indices role `i` includes, as a bit mask (itself included).
    const INCLUDES: &'static [u64];
    /// The name of the roles type, for messages (`"Role"`).
    const TYPE_NAME: &'static str;

    /// This role's index in [`Roles::ALL`].
    fn index(&self) -> usize;

    /// This role's name, as credentials spell it.
    fn name(&self) -> &'static str {
        Self::NAMES[self.index()]
    }

    /// Whether holding this role grants `other` (reflexive, transitive).
    fn includes(&self, other: &Self) -> bool {
        includes::<Self>(self.index(), other.index())
    }

    /// The role called `name`, if there is one.
    fn from_name(name: &str) -> Option<&'static Self> {
        role_index::<Self>(name).map(|i| &Self::ALL[i])
    }
}

/// The index of the role called `name`.
pub(crate) fn role_index<R: Roles>(name: &str) -> Option<usize> {
    R::NAMES.iter().position(|n| *n == name)
}

/// Whether role `holder` includes role `required`.
pub(crate) fn includes<R: Roles>(holder: usize, required: usize) -> bool {
    R::INCLUDES
        .get(holder)
        .is_some_and(|mask| mask & (1u64 << required) != 0)
}

/// The roles type of tools that declare no roles: nobody holds a role, so only `public` and
/// scope-guarded tools can exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoRoles {}

impl Roles for NoRoles {
    const ALL: &'static [Self] = &[];
    const NAMES: &'static [&'static str] = &[];
    const INCLUDES: &'static [u64] = &[];
    const TYPE_NAME: &'static str = "NoRoles";
    fn index(&self) -> usize {
        match *self {}
    }
}

/// A type standing for one role at compile time, so a handler can demand it: `Granted<Admin>`.
/// `#[derive(Roles)]` declares one uninhabited marker type per variant, named like the variant.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a role marker",
    note = "role markers are the types `#[derive(Roles)]` declares next to the enum, one per variant"
)]
pub trait RoleMarker: 'static {
    /// The roles type the role belongs to.
    type Roles: Roles;
    /// The role's index.
    const INDEX: usize;
}

/// The compile-time form of a tool's guard: the role its `#[mcp_tool]` checks, or
/// [`NoRoleGuard`] for `public` and scope-only tools.
pub trait Guard: 'static {
    /// The roles type of the tools.
    type Roles: Roles;
}

/// Proof at the type level that a guard checking `Self` also grants role `M`. Implemented by
/// `#[derive(Roles)]` for every pair the hierarchy allows, and for nothing else.
#[diagnostic::on_unimplemented(
    message = "this tool's guard does not grant `{M}`",
    label = "`Granted<{M}>` needs a tool guarded by `{M}` or a role that includes it",
    note = "a handler can never assume more privilege than its guard checks: guard the tool with `role = \"...\"` of a role that includes `{M}`, or take a lower `Granted<...>`"
)]
pub trait Includes<M: RoleMarker> {}

/// The guard of a tool that checks no role (`public`, or scopes only). It grants no role, so
/// such a tool cannot take any `Granted<...>`.
pub struct NoRoleGuard<R>(PhantomData<fn() -> R>);

impl<R: Roles> Guard for NoRoleGuard<R> {
    type Roles = R;
}

/// The calling principal, as a tool handler sees it.
///
/// ```no_run
/// # use mcp_gatekeeper::prelude::*;
/// # #[derive(Roles)] enum Role { Viewer, Admin }
/// # struct Tools;
/// #[mcp_tools(roles = Role)]
/// impl Tools {
///     /// Who am I?
///     #[mcp_tool(role = "viewer")]
///     async fn whoami(&self, caller: Caller<Role>) -> String {
///         format!("{} ({:?})", caller.subject(), caller.role().map(|r| r.name()))
///     }
/// }
/// ```
pub struct Caller<R: Roles> {
    principal: Arc<Principal>,
    _roles: PhantomData<fn() -> R>,
}

impl<R: Roles> Caller<R> {
    pub(crate) fn new(principal: Arc<Principal>) -> Self {
        Self {
            principal,
            _roles: PhantomData,
        }
    }

    /// The authenticated principal.
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// The subject (user or service).
    pub fn subject(&self) -> &str {
        self.principal.subject()
    }

    /// The caller's roles that the tools know, in the order the credential lists them.
    pub fn roles(&self) -> impl Iterator<Item = &'static R> + '_ {
        self.principal.roles().filter_map(R::from_name)
    }

    /// The caller's first known role, if any.
    pub fn role(&self) -> Option<&'static R> {
        self.roles().next()
    }

    /// Whether the caller holds `role` or a role that includes it.
    pub fn has_role(&self, role: &R) -> bool {
        self.roles().any(|held| held.includes(role))
    }

    /// The caller's scopes.
    pub fn scopes(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.principal.scopes()
    }

    /// Whether the caller's credential grants `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.principal.has_scope(scope)
    }

    /// The OAuth client id, if the credential was issued to a client.
    pub fn client_id(&self) -> Option<&str> {
        self.principal.client_id()
    }

    /// How the caller authenticated.
    pub fn auth_method(&self) -> crate::AuthMethod {
        self.principal.method()
    }
}

impl<R: Roles> fmt::Debug for Caller<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Caller").field(&self.principal).finish()
    }
}

/// Proof that the tool's guard checked that the caller holds role `M` (or one including it).
///
/// Only the generated guard can construct it, and only a tool whose `role = "..."` includes
/// `M` can take it as a parameter — the compiler rejects `Granted<Admin>` on a tool guarded by
/// `role = "viewer"`. Pass it on to functions that must only run for such callers:
///
/// ```no_run
/// # use mcp_gatekeeper::prelude::*;
/// # #[derive(Roles)] enum Role { Viewer, Admin }
/// fn wipe_everything(_proof: &Granted<Admin>) { /* ... */ }
/// ```
pub struct Granted<M: RoleMarker> {
    _marker: PhantomData<fn() -> M>,
}

impl<M: RoleMarker> Granted<M> {
    pub(crate) fn new() -> Self {
        Self {
            _marker: PhantomData,
        }
    }

    /// The role this proof stands for.
    pub fn role(&self) -> &'static M::Roles {
        &<M::Roles as Roles>::ALL[M::INDEX]
    }
}

impl<M: RoleMarker> fmt::Debug for Granted<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Granted<{}>", <M::Roles as Roles>::NAMES[M::INDEX])
    }
}
