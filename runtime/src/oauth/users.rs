//! Who may sign in at the authorization endpoint: users stored with argon2 password hashes, or
//! the application's own [`Login`].

use std::{fmt, sync::Arc};

use argon2::{
    Argon2,
    password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng},
};
use futures::future::BoxFuture;

use crate::{
    ConfigError,
    store::{Store, StoreError, UserRecord},
};

/// A user who can sign in with a password, configured in code (see
/// [`AuthorizationServer::user`](super::AuthorizationServer::user)). The password is hashed with
/// argon2id when the server is built and never kept.
#[derive(Clone)]
pub struct User {
    username: String,
    password: String,
    role: Option<String>,
    scopes: Option<Vec<String>>,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("role", &self.role)
            .field("scopes", &self.scopes)
            .finish()
    }
}

impl User {
    /// A user who signs in as `username` with `password`.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            password: password.into(),
            role: None,
            scopes: None,
        }
    }

    /// The role the user's tokens carry.
    pub fn role(mut self, role: impl Into<String>) -> Self {
        self.role = Some(role.into());
        self
    }

    /// The scopes the user may grant to clients (default: every scope the server supports).
    pub fn scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes = Some(scopes.into_iter().map(Into::into).collect());
        self
    }

    /// The login name.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// The user's role.
    pub(crate) fn role_name(&self) -> Option<&str> {
        self.role.as_deref()
    }

    /// Hashes the password (on a blocking thread: argon2 takes tens of milliseconds) and makes
    /// the stored record. A user with no scopes configured gets `*`: every supported scope.
    pub(crate) async fn into_record(self, now: i64) -> Result<UserRecord, ConfigError> {
        if self.username.is_empty() || self.username.chars().any(char::is_control) {
            return Err(ConfigError::invalid(
                "a username must be non-empty printable text",
            ));
        }
        if self.password.len() < 8 {
            return Err(ConfigError::invalid(format!(
                "the password of user `{}` is shorter than 8 characters",
                self.username
            )));
        }
        let password = self.password;
        let password_hash = tokio::task::spawn_blocking(move || hash_password(&password))
            .await
            .map_err(|_| ConfigError::invalid("password hashing did not finish"))??;
        Ok(UserRecord {
            username: self.username,
            password_hash,
            role: self.role,
            scopes: self.scopes.unwrap_or_else(|| vec![ALL_SCOPES.into()]),
            created_at: now,
        })
    }
}

/// The stored password hash of users signed in by a [`Login`] hook: not a PHC string, so no
/// password ever verifies against it.
const NO_PASSWORD: &str = "!login-hook";

/// Stored in a user's scopes to mean "every scope the server supports".
pub(crate) const ALL_SCOPES: &str = "*";

/// An argon2id PHC string for `password` with a random salt.
pub(crate) fn hash_password(password: &str) -> Result<String, ConfigError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|_| ConfigError::invalid("hashing a password failed"))
}

/// Someone who signed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedIn {
    /// The subject of the user's tokens.
    pub subject: String,
    /// The role the tokens carry.
    pub role: Option<String>,
    /// The scopes the user may grant; `None`: every scope the server supports.
    pub scopes: Option<Vec<String>>,
}

/// The future a [`Login`] returns.
pub type LoginFuture<'a> = BoxFuture<'a, Option<SignedIn>>;

/// The application's own sign-in, for apps that have their users elsewhere (a directory, an
/// existing database). Asked before the stored users; `None` falls through to them.
pub trait Login: Send + Sync + 'static {
    /// Checks a username and password. Must take about as long for an unknown user as for a
    /// wrong password, and never log the password.
    fn sign_in<'a>(&'a self, username: &'a str, password: &'a str) -> LoginFuture<'a>;
}

/// The configured sign-in: the application's hook, then the stored users.
pub(crate) struct Users {
    store: Arc<dyn Store>,
    hook: Option<Arc<dyn Login>>,
    /// Verified against when the user is unknown, so an unknown name costs the same argon2 run
    /// as a wrong password (no user enumeration by timing).
    dummy_hash: String,
}

impl Users {
    pub(crate) fn new(store: Arc<dyn Store>, hook: Option<Arc<dyn Login>>) -> Self {
        Self {
            store,
            hook,
            dummy_hash: hash_password("not a password of anyone")
                .unwrap_or_else(|_| String::from("$argon2id$v=19$m=19456,t=2,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")),
        }
    }

    /// Signs a user in; `Ok(None)` for a wrong name or password.
    pub(crate) async fn sign_in(
        &self,
        username: &str,
        password: &str,
    ) -> Result<Option<SignedIn>, StoreError> {
        if let Some(hook) = &self.hook
            && let Some(user) = hook.sign_in(username, password).await
        {
            // Remembered (with a password no one can sign in with), so the token endpoint finds
            // the user's current role and scopes on every refresh, as for stored users.
            self.store
                .put_user(UserRecord {
                    username: user.subject.clone(),
                    password_hash: NO_PASSWORD.into(),
                    role: user.role.clone(),
                    scopes: user
                        .scopes
                        .clone()
                        .unwrap_or_else(|| vec![ALL_SCOPES.into()]),
                    created_at: super::unix_now(),
                })
                .await?;
            return Ok(Some(user));
        }
        let user = self.store.get_user(username).await?;
        let hash = user
            .as_ref()
            .map_or_else(|| self.dummy_hash.clone(), |u| u.password_hash.clone());
        let password = password.to_owned();
        let matches = tokio::task::spawn_blocking(move || verify_password(&hash, &password))
            .await
            .unwrap_or(false);
        Ok(match user {
            Some(user) if matches => Some(signed_in(user)),
            _ => None,
        })
    }

    /// The user with this subject as of now: the token endpoint issues with the current role and
    /// scopes (a demoted or deleted user's grants shrink or end at the next refresh).
    pub(crate) async fn get(&self, username: &str) -> Result<Option<SignedIn>, StoreError> {
        Ok(self.store.get_user(username).await?.map(signed_in))
    }
}

fn signed_in(user: UserRecord) -> SignedIn {
    let all = user.scopes.iter().any(|s| s == ALL_SCOPES);
    SignedIn {
        subject: user.username,
        role: user.role,
        scopes: (!all).then_some(user.scopes),
    }
}

fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[tokio::test]
    async fn stored_users_sign_in_with_their_password_only() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let record = User::new("alice", "correct horse")
            .role("admin")
            .into_record(1)
            .await
            .unwrap();
        assert!(record.password_hash.starts_with("$argon2id$"));
        assert!(!record.password_hash.contains("correct horse"));
        store.put_user(record).await.unwrap();
        let users = Users::new(store, None);
        let alice = users
            .sign_in("alice", "correct horse")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(alice.subject, "alice");
        assert_eq!(alice.role.as_deref(), Some("admin"));
        assert_eq!(alice.scopes, None, "no scopes configured: all of them");
        assert_eq!(users.sign_in("alice", "wrong").await.unwrap(), None);
        assert_eq!(users.sign_in("bob", "correct horse").await.unwrap(), None);
    }

    #[tokio::test]
    async fn short_passwords_are_refused_and_debug_hides_them() {
        assert!(User::new("a", "short").into_record(1).await.is_err());
        let printed = format!("{:?}", User::new("a", "hunter2hunter2"));
        assert!(!printed.contains("hunter2"), "{printed}");
    }

    struct Directory;
    impl Login for Directory {
        fn sign_in<'a>(&'a self, username: &'a str, password: &'a str) -> LoginFuture<'a> {
            Box::pin(async move {
                (username == "carol" && password == "from-ldap").then(|| SignedIn {
                    subject: "carol@corp".into(),
                    role: Some("viewer".into()),
                    scopes: Some(vec!["data:read".into()]),
                })
            })
        }
    }

    #[tokio::test]
    async fn the_hook_is_asked_first() {
        let users = Users::new(Arc::new(MemoryStore::new()), Some(Arc::new(Directory)));
        let carol = users.sign_in("carol", "from-ldap").await.unwrap().unwrap();
        assert_eq!(carol.subject, "carol@corp");
        assert_eq!(users.sign_in("carol", "nope").await.unwrap(), None);
        // Remembered for refreshes, but never by password.
        assert_eq!(users.get("carol@corp").await.unwrap(), Some(carol));
        assert_eq!(
            users.sign_in("carol@corp", "!login-hook").await.unwrap(),
            None
        );
        assert_eq!(users.sign_in("carol@corp", "").await.unwrap(), None);
    }
}
