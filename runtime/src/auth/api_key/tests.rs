//! Tests of the parent module.

use std::time::{Duration, UNIX_EPOCH};

use super::*;

const SECRET: &str = "k3y-for-the-ci-runner-0001";
const OTHER: &str = "another-long-random-key-0002";
const JWT: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln";

fn parts() -> http::request::Parts {
    http::Request::builder().body(()).unwrap().into_parts().0
}

fn verdict(keys: &ApiKeys, credential: Option<Credential<'_>>) -> Verdict {
    let parts = parts();
    let request = AuthRequest {
        credential,
        parts: &parts,
    };
    match keys.authenticate(&request) {
        Authentication::Ready(verdict) => verdict,
        Authentication::Pending(_) => panic!("API keys must decide synchronously"),
    }
}

fn accepted(verdict: Verdict) -> Arc<Principal> {
    match verdict {
        Verdict::Accept(principal) => principal,
        other => panic!("expected Accept, got {other:?}"),
    }
}

fn rejected(verdict: Verdict) -> AuthError {
    match verdict {
        Verdict::Reject(error) => error,
        other => panic!("expected Reject, got {other:?}"),
    }
}

fn invalid_message(result: Result<ApiKeys, ConfigError>) -> String {
    match result {
        Err(ConfigError::Invalid(message)) => message,
        Err(other) => panic!("expected ConfigError::Invalid, got {other:?}"),
        Ok(keys) => panic!("expected an error, got {keys:?}"),
    }
}

fn env_id(secret: &str) -> String {
    format!("env-{}", &ApiKey::digest_hex(secret)[..8])
}

fn file_line(id: &str, role: &str, secret: &str, options: &str) -> String {
    format!(
        "{id} {role} sha256:{} {options}\n",
        ApiKey::digest_hex(secret)
    )
}

fn roles(principal: &Principal) -> Vec<&str> {
    principal.roles().collect()
}

// --- ApiKey -----------------------------------------------------------------------------

#[test]
fn digest_hex_matches_sha256sum() {
    // printf %s test | sha256sum
    assert_eq!(
        ApiKey::digest_hex("test"),
        "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    );
}

#[test]
fn from_sha256_hex_accepts_bare_and_prefixed_digests() {
    let hex_digest = ApiKey::digest_hex(SECRET);
    for written in [
        hex_digest.clone(),
        format!("sha256:{hex_digest}"),
        hex_digest.to_uppercase(),
    ] {
        let keys = ApiKeys::new().with_key(ApiKey::from_sha256_hex("ci", &written).unwrap());
        let principal = accepted(verdict(&keys, Some(Credential::ApiKey(SECRET))));
        assert_eq!(principal.credential_id(), Some("ci"));
    }
}

#[test]
fn from_sha256_hex_refuses_bad_digests_without_echoing_them() {
    for bad in ["abc", &"g".repeat(64), SECRET, ""] {
        let error = ApiKey::from_sha256_hex("ci", bad).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("`ci`"), "{message}");
        if !bad.is_empty() {
            assert!(!message.contains(bad), "{message}");
        }
    }
}

#[test]
fn debug_shows_neither_secret_nor_digest() {
    let key = ApiKey::new("ci", SECRET)
        .role("admin")
        .scopes(["read"])
        .expires_at(UNIX_EPOCH + Duration::from_secs(4_000_000_000));
    let digest = sha256(SECRET);
    let hex_digest = ApiKey::digest_hex(SECRET);
    let keys = ApiKeys::new().with_key(key.clone());
    for shown in [
        format!("{key:?}"),
        format!("{keys:?}"),
        format!("{keys:#?}"),
    ] {
        assert!(!shown.contains(SECRET), "{shown}");
        assert!(!shown.contains(&hex_digest), "{shown}");
        assert!(!shown.contains(&hex_digest[..16]), "{shown}");
        assert!(!shown.contains(&format!("{digest:?}")), "{shown}");
        assert!(shown.contains("ci") && shown.contains("admin") && shown.contains("read"));
    }
}

// --- Authentication ---------------------------------------------------------------------

#[test]
fn known_key_is_accepted_from_either_header() {
    let keys = ApiKeys::new().with_key(ApiKey::new("ci", SECRET).role("admin").scopes(["b", "a"]));
    for credential in [Credential::ApiKey(SECRET), Credential::Bearer(SECRET)] {
        let principal = accepted(verdict(&keys, Some(credential)));
        assert_eq!(principal.method(), AuthMethod::ApiKey);
        assert_eq!(principal.subject(), "ci");
        assert_eq!(principal.credential_id(), Some("ci"));
        assert_eq!(roles(&principal), ["admin"]);
        assert_eq!(principal.scopes().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(principal.expires_at(), None);
    }
}

#[test]
fn accepted_principal_is_shared_not_rebuilt() {
    let keys = ApiKeys::new().with_key(ApiKey::new("ci", SECRET));
    let first = accepted(verdict(&keys, Some(Credential::ApiKey(SECRET))));
    let second = accepted(verdict(&keys, Some(Credential::Bearer(SECRET))));
    assert!(Arc::ptr_eq(&first, &second));
}

#[test]
fn subject_and_expiry_reach_the_principal() {
    let later = SystemTime::now() + Duration::from_secs(3600);
    let keys = ApiKeys::new().with_key(
        ApiKey::new("ci", SECRET)
            .subject("svc@example.com")
            .expires_at(later),
    );
    let principal = accepted(verdict(&keys, Some(Credential::ApiKey(SECRET))));
    assert_eq!(principal.subject(), "svc@example.com");
    assert_eq!(principal.credential_id(), Some("ci"));
    assert_eq!(principal.expires_at(), Some(later));
}

#[test]
fn unknown_x_api_key_is_rejected_even_when_jwt_shaped() {
    let keys = ApiKeys::new().with_key(ApiKey::new("ci", SECRET));
    for secret in [OTHER, JWT] {
        let error = rejected(verdict(&keys, Some(Credential::ApiKey(secret))));
        assert_eq!(error.kind(), AuthErrorKind::InvalidToken);
        assert_eq!(error.description(), "Invalid API key");
        assert_eq!(error.credential_id(), None);
    }
}

#[test]
fn unknown_bearer_is_rejected_unless_jwt_shaped() {
    let keys = ApiKeys::new().with_key(ApiKey::new("ci", SECRET));
    let error = rejected(verdict(&keys, Some(Credential::Bearer(OTHER))));
    assert_eq!(error.kind(), AuthErrorKind::InvalidToken);
    assert_eq!(error.description(), "Invalid API key");
    assert!(matches!(
        verdict(&keys, Some(Credential::Bearer(JWT))),
        Verdict::Pass
    ));
}

#[test]
fn jwt_shaped_bearer_that_is_a_known_key_is_decided_here() {
    let keys = ApiKeys::new().with_key(ApiKey::new("odd", JWT));
    let principal = accepted(verdict(&keys, Some(Credential::Bearer(JWT))));
    assert_eq!(principal.credential_id(), Some("odd"));
}

#[test]
fn no_credential_passes() {
    let keys = ApiKeys::new().with_key(ApiKey::new("ci", SECRET));
    assert!(matches!(verdict(&keys, None), Verdict::Pass));
    assert!(matches!(verdict(&ApiKeys::new(), None), Verdict::Pass));
}

#[test]
fn expired_key_is_rejected_with_its_id() {
    let past = UNIX_EPOCH + Duration::from_secs(1);
    let keys = ApiKeys::new().with_key(ApiKey::new("old", SECRET).expires_at(past));
    for credential in [Credential::ApiKey(SECRET), Credential::Bearer(SECRET)] {
        let error = rejected(verdict(&keys, Some(credential)));
        assert_eq!(error.kind(), AuthErrorKind::Expired);
        assert_eq!(error.description(), "API key expired");
        assert_eq!(error.credential_id(), Some("old"));
    }
}

#[test]
fn name_and_configured_roles() {
    let keys = ApiKeys::new()
        .with_key(ApiKey::new("a", SECRET).role("writer"))
        .with_key(ApiKey::new("b", OTHER).role("admin"))
        .with_key(ApiKey::new("c", "third-key-long-enough").role("admin"));
    assert_eq!(keys.name(), "api_key");
    assert_eq!(keys.configured_roles(), ["admin", "writer"]);
    assert!(ApiKeys::new().configured_roles().is_empty());
}

#[test]
fn default_role_applies_only_to_keys_without_a_role_whenever_added() {
    let keys = ApiKeys::new()
        .with_key(ApiKey::new("before", SECRET))
        .with_key(ApiKey::new("admin", OTHER).role("admin"))
        .default_role("reader")
        .with_key(ApiKey::new("after", "third-key-long-enough"));
    for (secret, role) in [
        (SECRET, "reader"),
        (OTHER, "admin"),
        ("third-key-long-enough", "reader"),
    ] {
        let principal = accepted(verdict(&keys, Some(Credential::ApiKey(secret))));
        assert_eq!(roles(&principal), [role]);
    }
    assert_eq!(keys.configured_roles(), ["admin", "reader"]);
}

#[test]
fn duplicates_are_refused() {
    let error = ApiKeys::new()
        .with_key(ApiKey::new("a", SECRET))
        .try_with_key(ApiKey::new("b", SECRET))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("`a`") && error.contains("`b`") && !error.contains(SECRET),
        "{error}"
    );
    let error = ApiKeys::new()
        .with_key(ApiKey::new("a", SECRET))
        .try_with_key(ApiKey::new("a", OTHER))
        .unwrap_err()
        .to_string();
    assert!(error.contains("`a`"), "{error}");
}

#[test]
#[should_panic(expected = "same secret")]
fn with_key_panics_on_duplicates() {
    let _ = ApiKeys::new()
        .with_key(ApiKey::new("a", SECRET))
        .with_key(ApiKey::new("b", SECRET));
}

#[test]
fn len_and_is_empty() {
    assert!(ApiKeys::new().is_empty());
    let keys = ApiKeys::new().with_key(ApiKey::new("a", SECRET));
    assert_eq!((keys.len(), keys.is_empty()), (1, false));
}

// --- Environment format -----------------------------------------------------------------

#[test]
fn env_entries_with_and_without_role() {
    let keys = ApiKeys::parse_env_value(&format!("{SECRET}:admin,{OTHER}")).unwrap();
    assert_eq!(keys.len(), 2);
    let admin = accepted(verdict(&keys, Some(Credential::ApiKey(SECRET))));
    assert_eq!(roles(&admin), ["admin"]);
    assert_eq!(admin.credential_id(), Some(env_id(SECRET).as_str()));
    assert_eq!(admin.subject(), env_id(SECRET));
    let plain = accepted(verdict(&keys, Some(Credential::Bearer(OTHER))));
    assert!(roles(&plain).is_empty());
    assert_eq!(keys.configured_roles(), ["admin"]);
}

#[test]
fn env_whitespace_and_empty_entries_are_ignored() {
    let value = format!(" , {SECRET}:admin ,\n\t{OTHER} ,, ");
    let keys = ApiKeys::parse_env_value(&value).unwrap();
    assert_eq!(keys.len(), 2);
    accepted(verdict(&keys, Some(Credential::ApiKey(SECRET))));
    accepted(verdict(&keys, Some(Credential::ApiKey(OTHER))));
    assert!(ApiKeys::parse_env_value("").unwrap().is_empty());
    assert!(ApiKeys::parse_env_value(" , ").unwrap().is_empty());
}

#[test]
fn env_key_containing_colon_needs_a_role() {
    let keys = ApiKeys::parse_env_value("prefix:with-a-colon-inside:reader").unwrap();
    let principal = accepted(verdict(
        &keys,
        Some(Credential::ApiKey("prefix:with-a-colon-inside")),
    ));
    assert_eq!(roles(&principal), ["reader"]);
}

#[test]
fn env_invalid_role_suffix_is_refused_without_echoing() {
    for entry in [
        "long-enough-secret-123:not a role",
        "long-enough-secret-123:",
        "long-enough-secret:x!y",
    ] {
        let message = invalid_message(ApiKeys::parse_env_value(&format!("{SECRET},{entry}")));
        assert!(message.starts_with("entry 2 of "), "{message}");
        assert!(message.contains("role name"), "{message}");
        assert!(!message.contains("long-enough-secret"), "{message}");
        assert!(!message.contains("x!y"), "{message}");
    }
}

#[test]
fn env_short_secret_is_refused_without_echoing() {
    let message = invalid_message(ApiKeys::parse_env_value(&format!(
        "{SECRET}, short-key:admin"
    )));
    assert_eq!(
        message,
        "entry 2 of the API key list is shorter than 16 characters"
    );
    let message = invalid_message(ApiKeys::parse_env_list("fifteen-chars-x", "MCP_API_KEYS"));
    assert_eq!(
        message,
        "entry 1 of MCP_API_KEYS is shorter than 16 characters"
    );
    // Exactly 16 characters is enough.
    assert_eq!(
        ApiKeys::parse_env_value("sixteen-chars-xx").unwrap().len(),
        1
    );
}

#[test]
fn env_secret_must_be_sendable_in_a_header() {
    let message = invalid_message(ApiKeys::parse_env_value("a key with spaces inside"));
    assert!(
        message.starts_with("entry 1 of") && message.contains("visible ASCII"),
        "{message}"
    );
    assert!(!message.contains("spaces inside"), "{message}");
    let message = invalid_message(ApiKeys::parse_env_value("schlüssel-mit-umlaut-123"));
    assert!(message.contains("visible ASCII"), "{message}");
}

#[test]
fn env_duplicates_are_refused() {
    let value = format!("{SECRET}:admin, {OTHER}, {SECRET}:reader");
    let message = invalid_message(ApiKeys::parse_env_value(&value));
    assert_eq!(
        message,
        "entry 3 of the API key list is the same key as entry 1"
    );
}

#[test]
fn env_default_role_applies_to_entries_without_role() {
    let keys = ApiKeys::parse_env_value(&format!("{SECRET}:admin,{OTHER}"))
        .unwrap()
        .default_role("reader");
    let plain = accepted(verdict(&keys, Some(Credential::ApiKey(OTHER))));
    assert_eq!(roles(&plain), ["reader"]);
    assert_eq!(keys.configured_roles(), ["admin", "reader"]);
}

#[test]
fn from_env_unset_is_missing_env() {
    let var = "MCP_GATEKEEPER_API_KEY_TEST_VARIABLE_THAT_IS_NEVER_SET";
    match ApiKeys::from_env(var) {
        Err(ConfigError::MissingEnv(name)) => assert_eq!(name, var),
        other => panic!("expected MissingEnv, got {other:?}"),
    }
}

// --- File format ------------------------------------------------------------------------

#[test]
fn file_with_comments_blank_lines_and_all_options() {
    let text = format!(
        "\u{feff}# API keys\n\n   \n{}{}{}",
        file_line("ci", "admin", SECRET, "# trailing comment"),
        file_line(
            "reports",
            "-",
            OTHER,
            "scopes=read,export subject=reports@example.com expires=2999-01-01T00:00:00+01:00"
        ),
        "\t# indented comment\r\n",
    );
    let keys = ApiKeys::parse_file(&text).unwrap();
    assert_eq!(keys.len(), 2);
    let ci = accepted(verdict(&keys, Some(Credential::ApiKey(SECRET))));
    assert_eq!((ci.subject(), ci.credential_id()), ("ci", Some("ci")));
    assert_eq!(roles(&ci), ["admin"]);
    let reports = accepted(verdict(&keys, Some(Credential::Bearer(OTHER))));
    assert_eq!(reports.subject(), "reports@example.com");
    assert_eq!(reports.credential_id(), Some("reports"));
    assert!(roles(&reports).is_empty());
    assert_eq!(reports.scopes().collect::<Vec<_>>(), ["export", "read"]);
    let expected = chrono::DateTime::parse_from_rfc3339("2998-12-31T23:00:00Z").unwrap();
    assert_eq!(reports.expires_at(), Some(SystemTime::from(expected)));
    assert_eq!(keys.configured_roles(), ["admin"]);
}

#[test]
fn file_expired_key_is_loaded_and_rejected() {
    let text = file_line("old", "admin", SECRET, "expires=2000-01-01T00:00:00Z");
    let keys = ApiKeys::parse_file(&text).unwrap();
    let error = rejected(verdict(&keys, Some(Credential::ApiKey(SECRET))));
    assert_eq!(error.kind(), AuthErrorKind::Expired);
    assert_eq!(error.credential_id(), Some("old"));
}

#[test]
fn file_default_role_fills_dash_roles() {
    let text = file_line("ci", "-", SECRET, "");
    let keys = ApiKeys::parse_file(&text).unwrap().default_role("reader");
    assert_eq!(keys.configured_roles(), ["reader"]);
}

#[test]
fn empty_file_gives_no_keys() {
    assert!(ApiKeys::parse_file("# nothing yet\n\n").unwrap().is_empty());
}

fn file_error(text: &str) -> String {
    invalid_message(ApiKeys::parse_file(text))
}

#[test]
fn file_missing_fields_say_what_was_expected() {
    let message = file_error("# header\nci\n");
    assert!(message.starts_with("line 2: expected a ROLE"), "{message}");
    assert!(message.contains("sha256:HEX"), "{message}");
    let message = file_error("ci admin\n");
    assert!(
        message.starts_with("line 1: expected `sha256:HEX`"),
        "{message}"
    );
}

#[test]
fn file_plaintext_key_is_refused_with_instructions() {
    for text in [
        format!("ci admin {SECRET}\n"),
        format!("ci admin {}\n", ApiKey::digest_hex(SECRET)),
    ] {
        let message = file_error(&text);
        assert!(message.starts_with("line 1:"), "{message}");
        assert!(message.contains("sha256:"), "{message}");
        assert!(
            message.contains("printf %s \"$KEY\" | sha256sum"),
            "{message}"
        );
        assert!(!message.contains(SECRET), "{message}");
        assert!(!message.contains(&ApiKey::digest_hex(SECRET)), "{message}");
    }
}

#[test]
fn file_bad_digests_are_refused() {
    let message = file_error("ci admin sha256:abcd\n");
    assert!(
        message.starts_with("line 1:") && message.contains("found 4 characters"),
        "{message}"
    );
    let long = "a".repeat(65);
    let message = file_error(&format!("ci admin sha256:{long}\n"));
    assert!(message.contains("found 65 characters"), "{message}");
    let not_hex = format!("{}zz", "a".repeat(62));
    let message = file_error(&format!("ci admin sha256:{not_hex}\n"));
    assert!(
        message.contains("not hex digits") && !message.contains(&not_hex),
        "{message}"
    );
}

#[test]
fn file_bad_role_is_refused() {
    let message = file_error(&file_line("ci", "ad.min", SECRET, ""));
    assert!(
        message.starts_with("line 1: `ad.min` is not a role name"),
        "{message}"
    );
}

#[test]
fn file_bad_expiry_is_refused() {
    for expiry in ["2027-01-01", "tomorrow", "2027-13-01T00:00:00Z", ""] {
        let message = file_error(&file_line(
            "ci",
            "admin",
            SECRET,
            &format!("expires={expiry}"),
        ));
        assert!(
            message.starts_with("line 1: `expires=` must be an RFC 3339"),
            "{message}"
        );
    }
}

#[test]
fn file_unknown_or_malformed_options_are_refused() {
    let message = file_error(&file_line("ci", "admin", SECRET, "colour=blue"));
    assert!(
        message.starts_with("line 1: unknown option `colour=`"),
        "{message}"
    );
    let message = file_error(&file_line("ci", "admin", SECRET, "scopes=a oops"));
    assert!(
        message.starts_with("line 1: field 5 is not an option"),
        "{message}"
    );
    assert!(!message.contains("oops"), "{message}");
    for options in ["scopes=", "scopes=a,,b", "scopes=a,"] {
        let message = file_error(&file_line("ci", "admin", SECRET, options));
        assert!(message.contains("`scopes=` needs"), "{message}");
    }
    let message = file_error(&file_line("ci", "admin", SECRET, "subject="));
    assert!(message.contains("`subject=` needs a name"), "{message}");
    for options in [
        "scopes=a scopes=b",
        "subject=a subject=b",
        "expires=2030-01-01T00:00:00Z expires=2031-01-01T00:00:00Z",
    ] {
        let message = file_error(&file_line("ci", "admin", SECRET, options));
        assert!(message.contains("is given twice"), "{message}");
    }
}

#[test]
fn file_duplicates_name_both_lines() {
    let text = format!(
        "# keys\n{}{}",
        file_line("ci", "admin", SECRET, ""),
        file_line("ci", "admin", OTHER, "")
    );
    assert_eq!(
        file_error(&text),
        "line 3: key id `ci` is already used on line 2"
    );
    let text = format!(
        "{}\n{}",
        file_line("ci", "admin", SECRET, ""),
        file_line("deploy", "admin", SECRET, "")
    );
    assert_eq!(
        file_error(&text),
        "line 3: key `deploy` has the same digest as key `ci` on line 1"
    );
}

#[test]
fn from_file_reads_and_names_the_file_in_errors() {
    let dir = std::env::temp_dir().join(format!(
        "mcp-gatekeeper-api-key-test-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("keys.txt");
    std::fs::write(&good, file_line("ci", "admin", SECRET, "")).unwrap();
    let keys = ApiKeys::from_file(&good).unwrap();
    accepted(verdict(&keys, Some(Credential::ApiKey(SECRET))));

    let bad = dir.join("bad.txt");
    std::fs::write(&bad, format!("ci admin {SECRET}\n")).unwrap();
    let message = invalid_message(ApiKeys::from_file(&bad));
    assert!(
        message.starts_with(&format!("{}: line 1:", bad.display())),
        "{message}"
    );

    match ApiKeys::from_file(dir.join("missing.txt")) {
        Err(ConfigError::Io { path, .. }) => assert_eq!(path, dir.join("missing.txt")),
        other => panic!("expected Io, got {other:?}"),
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
