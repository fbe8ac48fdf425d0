//! Who may sign in at the authorization endpoint: users stored with argon2 password hashes, or
//! the application's own [`Login`].

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use argon2::{
    Argon2,
    password_hash::{PasswordHash, PasswordHasher, SaltString, rand_core::OsRng},
};
use futures::future::BoxFuture;
use subtle::ConstantTimeEq;

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

    /// Hashes the password with argon2id (on a blocking thread: it takes tens of
    /// milliseconds) and makes the record to store, created at `now` (unix seconds): what
    /// [`AuthorizationServer::build`](super::AuthorizationServer::build) stores for a
    /// configured user, for tools that add users to a store themselves (the `mcp-gatekeeper
    /// users add` command). A user with no scopes configured gets `*`: every supported scope.
    /// Needs a Tokio runtime.
    ///
    /// # Errors
    /// When the username is empty or holds control characters, or the password is shorter
    /// than 8 characters.
    pub async fn into_record(self, now: i64) -> Result<UserRecord, ConfigError> {
        if self.username.is_empty() || self.username.chars().any(char::is_control) {
            return Err(ConfigError::invalid(
                "a username must be non-empty printable text",
            ));
        }
        if self.password.len() < 8 {
            return Err(ConfigError::WeakSecret {
                what: format!("the password of user `{}`", self.username),
                minimum: 8,
                unit: "characters",
            });
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

/// Why a sign-in could not be decided.
#[derive(Debug)]
pub(crate) enum SignInError {
    /// Every password check is taken and the queue is full or waited too long: try again
    /// after this long.
    Busy(Duration),
    /// The store failed.
    Store(StoreError),
}

impl From<StoreError> for SignInError {
    fn from(error: StoreError) -> Self {
        SignInError::Store(error)
    }
}

/// How long a sign-in waits for a password check before it is answered "busy".
const QUEUE_DEADLINE: Duration = Duration::from_secs(5);
/// How many sign-ins may wait per worker; more are answered "busy" at once.
const WAITING_PER_CHECK: usize = 16;
/// The largest argon2 memory a stored hash may ask for (KiB): hashes come from our own store,
/// but a hand-edited or hostile row must not make a worker allocate without bound.
const MAX_MEMORY_KIB: u32 = 256 * 1024;

/// A password to check against a stored hash, and where the answer goes.
struct Job {
    hash: String,
    password: String,
    /// Past this instant nobody waits for the answer any more: the job is skipped.
    deadline: std::time::Instant,
    answer: tokio::sync::oneshot::Sender<Option<bool>>,
}

/// Password checks (argon2id: about 19 MiB and tens of milliseconds each) run on a few
/// dedicated threads, one per core by default, each reusing one argon2 memory buffer.
///
/// Why not Tokio's blocking pool: without a bound, a burst of sign-ins starts a check per
/// request there (up to 512 threads: 10 GiB, measured 7.8 GB); and even bounded to two at a
/// time, every run lands on some pool thread whose allocator arena then keeps the 19 MiB it
/// freed (measured 720 MB after 36 checks). Fixed workers with their own buffers hold exactly
/// `workers × 19 MiB` however many sign-ins arrive. Sign-ins beyond the workers wait in a
/// bounded queue for at most [`QUEUE_DEADLINE`], then are answered "busy".
pub(crate) struct PasswordChecks {
    jobs: std::sync::mpsc::SyncSender<Job>,
    waiting: Arc<AtomicUsize>,
}

impl PasswordChecks {
    /// `workers` dedicated threads (at least one).
    pub(crate) fn new(workers: usize) -> Self {
        let workers = workers.max(1);
        let (jobs, queue) = std::sync::mpsc::sync_channel::<Job>(workers * WAITING_PER_CHECK);
        let queue = Arc::new(std::sync::Mutex::new(queue));
        let waiting = Arc::new(AtomicUsize::new(0));
        for n in 0..workers {
            let (queue, waiting) = (queue.clone(), waiting.clone());
            // A thread that cannot be started leaves fewer workers: sign-ins are slower, or
            // answered "busy", never unbounded.
            let _ = std::thread::Builder::new()
                .name(format!("mcp-gatekeeper-password-{n}"))
                .spawn(move || work(&queue, &waiting));
        }
        Self { jobs, waiting }
    }

    /// One worker per core: argon2 is CPU-bound, more parallel checks only add memory.
    pub(crate) fn per_core() -> Self {
        Self::new(std::thread::available_parallelism().map_or(2, |n| n.get()))
    }

    /// Whether `password` matches the PHC string `hash`, once a worker is free.
    async fn verify(&self, hash: String, password: String) -> Result<bool, SignInError> {
        let busy = || SignInError::Busy(Duration::from_secs(1));
        let (answer, answered) = tokio::sync::oneshot::channel();
        let job = Job {
            hash,
            password,
            deadline: std::time::Instant::now() + QUEUE_DEADLINE,
            answer,
        };
        self.waiting.fetch_add(1, Ordering::Relaxed);
        if self.jobs.try_send(job).is_err() {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            return Err(busy());
        }
        // If the request is abandoned meanwhile, the worker still runs (or skips) the job; the
        // number of checks at once never exceeds the workers.
        answered.await.ok().flatten().ok_or_else(busy)
    }
}

/// A worker: takes jobs one at a time and checks them with its own argon2 memory.
fn work(queue: &std::sync::Mutex<std::sync::mpsc::Receiver<Job>>, waiting: &AtomicUsize) {
    let mut memory: Vec<argon2::Block> = Vec::new();
    loop {
        // The lock is held only while taking a job, never while hashing.
        let job = match queue.lock().unwrap_or_else(|e| e.into_inner()).recv() {
            Ok(job) => job,
            Err(_) => return, // the server is gone
        };
        waiting.fetch_sub(1, Ordering::Relaxed);
        let result = (std::time::Instant::now() < job.deadline)
            .then(|| verify_with(&mut memory, &job.hash, &job.password));
        let _ = job.answer.send(result);
    }
}

/// Whether `password` matches the argon2 PHC string `hash`, computing into `memory` (grown to
/// the hash's memory cost once, then reused).
fn verify_with(memory: &mut Vec<argon2::Block>, hash: &str, password: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let (Ok(algorithm), Ok(params), Some(expected), Some(salt)) = (
        argon2::Algorithm::try_from(parsed.algorithm),
        argon2::Params::try_from(&parsed),
        parsed.hash,
        parsed.salt,
    ) else {
        return false;
    };
    let version = match parsed.version.map(argon2::Version::try_from) {
        None => argon2::Version::default(),
        Some(Ok(version)) => version,
        Some(Err(_)) => return false,
    };
    if params.m_cost() > MAX_MEMORY_KIB {
        return false;
    }
    let mut salt_bytes = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    if memory.len() < params.block_count() {
        memory.resize(params.block_count(), argon2::Block::default());
    }
    let mut out = vec![0u8; expected.len()];
    let blocks = params.block_count();
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password.as_bytes(), salt, &mut out, &mut memory[..blocks])
        .is_ok()
        && bool::from(out.as_slice().ct_eq(expected.as_bytes()))
}

/// The configured sign-in: the application's hook, then the stored users.
pub(crate) struct Users {
    store: Arc<dyn Store>,
    hook: Option<Arc<dyn Login>>,
    checks: PasswordChecks,
    /// Verified against when the user is unknown, so an unknown name costs the same argon2 run
    /// (under the same bound) as a wrong password (no user enumeration by timing).
    dummy_hash: String,
}

impl Users {
    pub(crate) fn new(
        store: Arc<dyn Store>,
        hook: Option<Arc<dyn Login>>,
        checks: PasswordChecks,
    ) -> Self {
        Self {
            store,
            hook,
            checks,
            dummy_hash: hash_password("not a password of anyone")
                .unwrap_or_else(|_| String::from("$argon2id$v=19$m=19456,t=2,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")),
        }
    }

    /// Signs a user in; `Ok(None)` for a wrong name or password.
    pub(crate) async fn sign_in(
        &self,
        username: &str,
        password: &str,
    ) -> Result<Option<SignedIn>, SignInError> {
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
        let matches = self.checks.verify(hash, password.to_owned()).await?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    /// The argon2 crate's own verification, the reference for [`verify_with`].
    fn reference(hash: &str, password: &str) -> bool {
        use argon2::password_hash::PasswordVerifier;
        PasswordHash::new(hash).is_ok_and(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
    }

    #[test]
    fn reused_memory_verifies_exactly_as_the_argon2_crate_does() {
        use argon2::{Algorithm, Params, Version};
        let mut memory = Vec::new();
        let mut hashes = vec![hash_password("correct horse").unwrap()];
        for (algorithm, version, m, t, p, len) in [
            (Algorithm::Argon2id, Version::V0x13, 8, 1, 1, 32),
            (Algorithm::Argon2id, Version::V0x13, 64, 3, 2, 16),
            (Algorithm::Argon2i, Version::V0x13, 32, 2, 1, 32),
            (Algorithm::Argon2d, Version::V0x10, 16, 1, 1, 64),
        ] {
            let params = Params::new(m, t, p, Some(len)).unwrap();
            let salt = SaltString::generate(&mut OsRng);
            hashes.push(
                Argon2::new(algorithm, version, params)
                    .hash_password(b"correct horse", &salt)
                    .unwrap()
                    .to_string(),
            );
        }
        // Each hash in turn, so the one buffer shrinks and grows between them.
        for _ in 0..2 {
            for hash in &hashes {
                for password in ["correct horse", "correct hors", "", "correct horse "] {
                    assert_eq!(
                        verify_with(&mut memory, hash, password),
                        reference(hash, password),
                        "{hash} / {password:?}"
                    );
                }
            }
        }
        let good = &hashes[1];
        let mut broken = vec![
            String::new(),
            "not a hash".into(),
            NO_PASSWORD.into(),
            good.replace("argon2id", "argon2x"),
            good.replace("v=19", "v=18"),
            good.replace("m=8", "m=999999999"),
            good[..good.len() - 4].into(),
        ];
        broken.push(format!("{}A", &good[..good.rfind('$').unwrap() + 1]));
        for hash in &broken {
            assert!(!verify_with(&mut memory, hash, "correct horse"), "{hash}");
            // (The crate itself would try to allocate a terabyte for the oversized one.)
            if !hash.contains("m=999999999") {
                assert!(!reference(hash, "correct horse"), "{hash}");
            }
        }
    }

    #[tokio::test]
    async fn checks_beyond_the_queue_are_busy_and_the_rest_are_answered() {
        let hash = hash_password("correct horse").unwrap();
        let checks = Arc::new(PasswordChecks::new(1));
        let attempts = (0..(WAITING_PER_CHECK * 3)).map(|_| {
            let (checks, hash) = (checks.clone(), hash.clone());
            tokio::spawn(async move { checks.verify(hash, "correct horse".into()).await })
        });
        let results = futures::future::join_all(attempts).await;
        let answered = results.iter().filter(|r| matches!(r, Ok(Ok(true)))).count();
        let busy = results
            .iter()
            .filter(|r| matches!(r, Ok(Err(SignInError::Busy(_)))))
            .count();
        assert_eq!(answered + busy, WAITING_PER_CHECK * 3, "{results:?}");
        assert!(
            answered >= 1 && busy >= WAITING_PER_CHECK,
            "{answered} / {busy}"
        );
    }

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
        let users = Users::new(store, None, PasswordChecks::new(1));
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
        let users = Users::new(
            Arc::new(MemoryStore::new()),
            Some(Arc::new(Directory)),
            PasswordChecks::new(1),
        );
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
