//! Caps on the strings a record carries, so that an outsider who sends an 8 KB client id or a
//! 60 KB username gets a line of a few hundred bytes, not one the size of the input.
//!
//! A field longer than its cap keeps its first bytes up to the cap (cut at a character
//! boundary) followed by a marker, `…[+8000 bytes]`, saying how many bytes were left out. The
//! cut copy lives in a stack buffer owned by the caller, so bounding never allocates; a record
//! whose fields all fit (nearly every record) is not copied at all.

use std::fmt::{self, Write as _};

use super::AuditRecord;

/// The longest prefix kept of `reason`, `subject`, `issuer`, `method`, `credential_id`,
/// `client_id` and `tool`, in bytes: far above any name this crate or a sane client uses.
pub(super) const FIELD_MAX_BYTES: usize = 256;

/// The longest prefix kept of `detail`, in bytes: room for a full error message.
pub(super) const DETAIL_MAX_BYTES: usize = 1024;

/// The longest marker: `…` (3 bytes), `[+`, up to 20 digits, ` bytes]`.
const MARKER_MAX_BYTES: usize = 3 + 2 + 20 + 7;

impl AuditRecord<'_> {
    /// Whether every string field is within its cap, so the record can be written as is.
    pub(super) fn within_bounds(&self) -> bool {
        let short = [
            self.reason,
            self.subject,
            self.issuer,
            self.method,
            self.credential_id,
            self.client_id,
            self.tool,
        ];
        short
            .into_iter()
            .all(|f| f.is_none_or(|v| v.len() <= FIELD_MAX_BYTES))
            && self.detail.is_none_or(|v| v.len() <= DETAIL_MAX_BYTES)
    }
}

/// Stack room for the cut copies of one record's fields (about 3.1 KB, only used for a record
/// that has a field over its cap).
pub(super) struct Room {
    reason: [u8; FIELD_MAX_BYTES + MARKER_MAX_BYTES],
    subject: [u8; FIELD_MAX_BYTES + MARKER_MAX_BYTES],
    issuer: [u8; FIELD_MAX_BYTES + MARKER_MAX_BYTES],
    method: [u8; FIELD_MAX_BYTES + MARKER_MAX_BYTES],
    credential_id: [u8; FIELD_MAX_BYTES + MARKER_MAX_BYTES],
    client_id: [u8; FIELD_MAX_BYTES + MARKER_MAX_BYTES],
    tool: [u8; FIELD_MAX_BYTES + MARKER_MAX_BYTES],
    detail: [u8; DETAIL_MAX_BYTES + MARKER_MAX_BYTES],
}

impl Room {
    /// Empty room.
    pub(super) fn new() -> Self {
        Self {
            reason: [0; FIELD_MAX_BYTES + MARKER_MAX_BYTES],
            subject: [0; FIELD_MAX_BYTES + MARKER_MAX_BYTES],
            issuer: [0; FIELD_MAX_BYTES + MARKER_MAX_BYTES],
            method: [0; FIELD_MAX_BYTES + MARKER_MAX_BYTES],
            credential_id: [0; FIELD_MAX_BYTES + MARKER_MAX_BYTES],
            client_id: [0; FIELD_MAX_BYTES + MARKER_MAX_BYTES],
            tool: [0; FIELD_MAX_BYTES + MARKER_MAX_BYTES],
            detail: [0; DETAIL_MAX_BYTES + MARKER_MAX_BYTES],
        }
    }
}

/// `record` with every string field cut to its cap; fields that fit are borrowed from `record`
/// unchanged, the others are copied (cut, with the marker) into `room`.
pub(super) fn bounded<'r>(record: &AuditRecord<'r>, room: &'r mut Room) -> AuditRecord<'r> {
    AuditRecord {
        reason: cut(record.reason, FIELD_MAX_BYTES, &mut room.reason),
        detail: cut(record.detail, DETAIL_MAX_BYTES, &mut room.detail),
        subject: cut(record.subject, FIELD_MAX_BYTES, &mut room.subject),
        issuer: cut(record.issuer, FIELD_MAX_BYTES, &mut room.issuer),
        method: cut(record.method, FIELD_MAX_BYTES, &mut room.method),
        credential_id: cut(
            record.credential_id,
            FIELD_MAX_BYTES,
            &mut room.credential_id,
        ),
        client_id: cut(record.client_id, FIELD_MAX_BYTES, &mut room.client_id),
        tool: cut(record.tool, FIELD_MAX_BYTES, &mut room.tool),
        ..*record
    }
}

/// `value` if it is at most `max` bytes long; otherwise its longest prefix of at most `max`
/// bytes that ends on a character boundary, then the marker, copied into `room`.
fn cut<'r>(value: Option<&'r str>, max: usize, room: &'r mut [u8]) -> Option<&'r str> {
    let value = value?;
    if value.len() <= max {
        return Some(value);
    }
    let kept = value.floor_char_boundary(max);
    let mut filler = Filler { room, len: 0 };
    filler.push(value.as_bytes().get(..kept).unwrap_or_default());
    // Writing to a `Filler` cannot fail; it only stops at the end of the room, which has space
    // for the longest marker.
    let _ = write!(filler, "…[+{} bytes]", value.len() - kept);
    let Filler { room, len } = filler;
    // A prefix cut at a character boundary followed by the marker is valid UTF-8, so this
    // never falls back.
    Some(std::str::from_utf8(room.get(..len).unwrap_or_default()).unwrap_or("…"))
}

/// Appends bytes to a fixed buffer, dropping what does not fit.
struct Filler<'r> {
    room: &'r mut [u8],
    len: usize,
}

impl Filler<'_> {
    /// Copies as much of `bytes` as fits after what is already there.
    fn push(&mut self, bytes: &[u8]) {
        let free = self.room.get_mut(self.len..).unwrap_or_default();
        let n = bytes.len().min(free.len());
        if let (Some(to), Some(from)) = (free.get_mut(..n), bytes.get(..n)) {
            to.copy_from_slice(from);
            self.len += n;
        }
    }
}

impl fmt::Write for Filler<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AuditEvent, Outcome};

    #[test]
    fn short_fields_are_borrowed_untouched() {
        let subject = "alice";
        let detail = "d".repeat(DETAIL_MAX_BYTES);
        let tool = "t".repeat(FIELD_MAX_BYTES);
        let mut record = AuditRecord::new(AuditEvent::ToolCall, Outcome::Allowed);
        record.subject = Some(subject);
        record.detail = Some(&detail);
        record.tool = Some(&tool);
        assert!(record.within_bounds());
        let mut room = Room::new();
        let out = bounded(&record, &mut room);
        // The very same bytes, not a copy.
        assert_eq!(out.subject.map(str::as_ptr), Some(subject.as_ptr()));
        assert_eq!(out.detail.map(str::as_ptr), Some(detail.as_ptr()));
        assert_eq!(out.tool.map(str::as_ptr), Some(tool.as_ptr()));
        assert_eq!(out.reason, None);
    }

    #[test]
    fn long_fields_are_cut_with_a_marker_saying_how_much_was_dropped() {
        let client_id = "c".repeat(8 * 1024);
        let detail = "x".repeat(60 * 1024);
        let mut record = AuditRecord::new(AuditEvent::Token, Outcome::Denied);
        record.client_id = Some(&client_id);
        record.detail = Some(&detail);
        record.reason = Some("invalid_client");
        record.retry_after_seconds = Some(3);
        assert!(!record.within_bounds());
        let mut room = Room::new();
        let out = bounded(&record, &mut room);
        assert_eq!(
            out.client_id.unwrap(),
            format!("{}…[+{} bytes]", "c".repeat(256), 8 * 1024 - 256)
        );
        assert_eq!(
            out.detail.unwrap(),
            format!("{}…[+{} bytes]", "x".repeat(1024), 60 * 1024 - 1024)
        );
        assert_eq!(out.reason, Some("invalid_client"));
        assert_eq!(out.retry_after_seconds, Some(3));
    }

    #[test]
    fn cuts_fall_on_character_boundaries() {
        // 'é' is two bytes and '😀' four: every cut position lands inside one of them for
        // some prefix length.
        for pad in 0..4 {
            let value = format!("{}{}", "a".repeat(pad), "é😀".repeat(100));
            let mut room = [0u8; FIELD_MAX_BYTES + MARKER_MAX_BYTES];
            let out = cut(Some(&value), FIELD_MAX_BYTES, &mut room).unwrap();
            let (kept, marker) = out.split_once('…').unwrap();
            assert!(kept.len() <= FIELD_MAX_BYTES && kept.len() > FIELD_MAX_BYTES - 4);
            assert!(value.starts_with(kept));
            assert_eq!(marker, format!("[+{} bytes]", value.len() - kept.len()));
        }
    }

    #[test]
    fn the_room_fits_the_longest_marker() {
        let mut room = [0u8; FIELD_MAX_BYTES + MARKER_MAX_BYTES];
        let mut filler = Filler {
            room: &mut room,
            len: 0,
        };
        filler.push(&[b'a'; FIELD_MAX_BYTES]);
        let _ = write!(filler, "…[+{} bytes]", usize::MAX);
        assert_eq!(filler.len, FIELD_MAX_BYTES + MARKER_MAX_BYTES);
    }
}
