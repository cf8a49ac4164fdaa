//! What each PostgreSQL major accepts on a replication connection, in one place.
//!
//! The commands and pgoutput options changed across majors (PostgreSQL docs, "Streaming
//! Replication Protocol" and "Logical Streaming Replication Parameters"):
//!
//! | feature                                   | from |
//! |-------------------------------------------|------|
//! | logical replication, pgoutput `proto_version` 1 | 10 |
//! | `proto_version` 2, `streaming`, `binary`, `messages` | 14 |
//! | `proto_version` 3 (two-phase), `CREATE_REPLICATION_SLOT ... (SNAPSHOT 'export')` option syntax | 15 |
//! | `proto_version` 4 (parallel streaming), `origin` | 16 |
//! | failover slots (`FAILOVER`)               | 17 |
//!
//! An option a server does not know is refused at `START_REPLICATION` (`unrecognized pgoutput
//! option`), so options are chosen here from the version the server reported at startup,
//! and a request the server cannot serve is refused before it is sent, with the version it
//! needs.

use crate::error::{ReplicationError, Result};
use crate::lsn::Lsn;

/// The oldest major with logical replication (pgoutput and publications).
pub const MIN_MAJOR: u32 = 10;

/// A server's version, from its `server_version` parameter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerVersion {
    /// The major: `13` for `13.23`, `9` for `9.6.24`.
    pub major: u32,
    /// `server_version_num`-style number: `130023`, `90624`.
    pub num: u32,
    /// The text as reported, e.g. `16.4 (Debian 16.4-1.pgdg120+2)`.
    pub text: String,
}

impl ServerVersion {
    /// Parses `server_version` as sent in the startup's ParameterStatus.
    pub fn parse(text: &str) -> Result<Self> {
        let bad = || ReplicationError::Protocol(format!("unparseable server_version {text:?}"));
        let head: String = text
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        let mut parts = head.split('.').filter(|p| !p.is_empty());
        let first: u32 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let second: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        let (major, num) = if first >= 10 {
            (first, first * 10000 + second)
        } else {
            // 9.6.24: the major is two numbers; the number keeps both.
            let third: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
            (first, first * 10000 + second * 100 + third)
        };
        Ok(ServerVersion {
            major,
            num,
            text: text.to_string(),
        })
    }

    /// The highest pgoutput protocol version the server speaks: 1 on 10–13, 2 on 14, 3 on
    /// 15, 4 on 16 and later.
    pub fn max_proto_version(&self) -> u32 {
        match self.major {
            ..=13 => 1,
            14 => 2,
            15 => 3,
            _ => 4,
        }
    }

    /// Fails with the version needed when the server is older than `needs`.
    pub fn require(&self, feature: &'static str, needs: u32) -> Result<()> {
        if self.major >= needs {
            Ok(())
        } else {
            Err(ReplicationError::Unsupported {
                feature,
                needs,
                server: self.text.clone(),
            })
        }
    }
}

/// How pgoutput should stream in-progress transactions (the `streaming` option, 14+).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Streaming {
    /// Send each transaction after it commits (the only mode before 14).
    #[default]
    Off,
    /// Send large transactions while they run, between Stream Start and Stream Stop.
    On,
}

/// Which changes to send by origin (the `origin` option, 16+).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OriginFilter {
    /// Changes whatever their origin (the server's default; the option is not sent).
    #[default]
    Any,
    /// Only changes made locally, not ones applied by another replication.
    None,
}

/// What the caller wants from pgoutput; [`PluginOptions::for_server`] turns it into the
/// option list the server accepts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PluginRequest {
    /// Publications to stream.
    pub publications: Vec<String>,
    /// Binary tuple data where the server can (14+); text otherwise.
    pub binary: bool,
    /// Logical messages (`pg_logical_emit_message`) where the server can (14+).
    pub messages: bool,
    /// Streaming of in-progress transactions; refused before 14.
    pub streaming: Streaming,
    /// Origin filter; `None` is refused before 16.
    pub origin: OriginFilter,
}

/// The pgoutput options sent with `START_REPLICATION`, and what was negotiated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginOptions {
    /// pgoutput protocol version.
    pub proto_version: u32,
    /// Whether tuples may arrive in binary.
    pub binary: bool,
    /// Whether logical messages arrive.
    pub messages: bool,
    /// Whether in-progress transactions are streamed.
    pub streaming: bool,
    /// The `(name 'value', ...)` list, in order.
    pub options: Vec<(&'static str, String)>,
}

impl PluginOptions {
    /// Chooses options for `server`: the highest protocol it speaks, `binary` and
    /// `messages` only where they exist (silently left out before 14: walrus decodes text
    /// tuples too, and without messages only their events are missing), and `streaming` or
    /// an origin filter refused where they do not.
    pub fn for_server(server: &ServerVersion, request: &PluginRequest) -> Result<Self> {
        if request.publications.is_empty() {
            return Err(ReplicationError::Invalid("no publication to stream".into()));
        }
        let proto_version = server.max_proto_version();
        let since_14 = server.major >= 14;
        let binary = request.binary && since_14;
        let messages = request.messages && since_14;
        let streaming = request.streaming == Streaming::On;
        if streaming {
            server.require("streaming of in-progress transactions", 14)?;
        }
        if request.origin == OriginFilter::None {
            server.require("the origin filter", 16)?;
        }
        let names = request
            .publications
            .iter()
            .map(|p| quote_ident(p))
            .collect::<Result<Vec<_>>>()?
            .join(",");
        let mut options = vec![
            ("proto_version", proto_version.to_string()),
            ("publication_names", names),
        ];
        if binary {
            options.push(("binary", "true".into()));
        }
        if messages {
            options.push(("messages", "true".into()));
        }
        if streaming {
            options.push(("streaming", "true".into()));
        }
        if request.origin == OriginFilter::None {
            options.push(("origin", "none".into()));
        }
        Ok(PluginOptions {
            proto_version,
            binary,
            messages,
            streaming,
            options,
        })
    }

    /// `START_REPLICATION SLOT "slot" LOGICAL <start> (<options>)`.
    pub fn start_command(&self, slot: &str, start: Lsn) -> Result<String> {
        let options = self
            .options
            .iter()
            .map(|(k, v)| Ok(format!("{k} {}", quote_literal(v)?)))
            .collect::<Result<Vec<_>>>()?
            .join(", ");
        Ok(format!(
            "START_REPLICATION SLOT {} LOGICAL {start} ({options})",
            quote_ident(slot)?
        ))
    }
}

/// What `CREATE_REPLICATION_SLOT` should do with the snapshot it builds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotAction {
    /// Export it (`snapshot_name` in the result), usable by other sessions until this
    /// connection runs its next command.
    Export,
    /// Do not export it.
    NoExport,
}

/// A `CREATE_REPLICATION_SLOT ... LOGICAL pgoutput` request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateSlot {
    /// Slot name.
    pub name: String,
    /// Dropped when the connection ends.
    pub temporary: bool,
    /// The snapshot.
    pub snapshot: SnapshotAction,
    /// Synchronised to standbys (17+); refused before.
    pub failover: bool,
}

impl CreateSlot {
    /// The command in the syntax `server` accepts: the keyword form on 10–14
    /// (`EXPORT_SNAPSHOT`), the parenthesised option list from 15 (`(SNAPSHOT 'export')`),
    /// with `FAILOVER` from 17.
    pub fn command(&self, server: &ServerVersion) -> Result<String> {
        if self.failover {
            server.require("failover slots", 17)?;
        }
        server.require("logical replication", MIN_MAJOR)?;
        let name = quote_ident(&self.name)?;
        let temporary = if self.temporary { " TEMPORARY" } else { "" };
        if server.major < 15 {
            let snapshot = match self.snapshot {
                SnapshotAction::Export => "EXPORT_SNAPSHOT",
                SnapshotAction::NoExport => "NOEXPORT_SNAPSHOT",
            };
            return Ok(format!(
                "CREATE_REPLICATION_SLOT {name}{temporary} LOGICAL pgoutput {snapshot}"
            ));
        }
        let mut options = vec![match self.snapshot {
            SnapshotAction::Export => "SNAPSHOT 'export'",
            SnapshotAction::NoExport => "SNAPSHOT 'nothing'",
        }];
        if self.failover {
            options.push("FAILOVER true");
        }
        Ok(format!(
            "CREATE_REPLICATION_SLOT {name}{temporary} LOGICAL pgoutput ({})",
            options.join(", ")
        ))
    }
}

/// Quotes an identifier for a replication command.
pub fn quote_ident(name: &str) -> Result<String> {
    if name.contains('\0') {
        return Err(ReplicationError::Invalid(format!(
            "identifier {name:?} contains NUL"
        )));
    }
    Ok(format!("\"{}\"", name.replace('"', "\"\"")))
}

/// Quotes a string literal for a replication command (standard-conforming strings).
pub fn quote_literal(value: &str) -> Result<String> {
    if value.contains('\0') {
        return Err(ReplicationError::Invalid(format!(
            "literal {value:?} contains NUL"
        )));
    }
    Ok(format!("'{}'", value.replace('\'', "''")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> ServerVersion {
        ServerVersion::parse(text).unwrap()
    }

    fn request() -> PluginRequest {
        PluginRequest {
            publications: vec!["walrus".into()],
            binary: true,
            messages: true,
            ..PluginRequest::default()
        }
    }

    #[test]
    fn parses_versions() {
        assert_eq!((v("13.23").major, v("13.23").num), (13, 130023));
        assert_eq!(v("16.4 (Debian 16.4-1.pgdg120+2)").num, 160004);
        assert_eq!((v("9.6.24").major, v("9.6.24").num), (9, 90624));
        assert_eq!(v("18beta1").major, 18);
        assert!(ServerVersion::parse("devel").is_err());
    }

    #[test]
    fn option_set_of_every_major() {
        let expect = [
            (10, "(proto_version '1', publication_names '\"walrus\"')"),
            (11, "(proto_version '1', publication_names '\"walrus\"')"),
            (12, "(proto_version '1', publication_names '\"walrus\"')"),
            (13, "(proto_version '1', publication_names '\"walrus\"')"),
            (14, "(proto_version '2', publication_names '\"walrus\"', binary 'true', messages 'true')"),
            (15, "(proto_version '3', publication_names '\"walrus\"', binary 'true', messages 'true')"),
            (16, "(proto_version '4', publication_names '\"walrus\"', binary 'true', messages 'true')"),
            (17, "(proto_version '4', publication_names '\"walrus\"', binary 'true', messages 'true')"),
            (18, "(proto_version '4', publication_names '\"walrus\"', binary 'true', messages 'true')"),
        ];
        for (major, options) in expect {
            let server = v(&format!("{major}.1"));
            let o = PluginOptions::for_server(&server, &request()).unwrap();
            assert_eq!(
                o.start_command("s", Lsn(0x16_0000_0001)).unwrap(),
                format!("START_REPLICATION SLOT \"s\" LOGICAL 16/1 {options}"),
                "{major}"
            );
            assert_eq!(o.binary, major >= 14);
            assert_eq!(o.messages, major >= 14);
        }
    }

    #[test]
    fn streaming_and_origin_need_their_versions() {
        let mut r = request();
        r.streaming = Streaming::On;
        let err = PluginOptions::for_server(&v("13.23"), &r).unwrap_err();
        assert!(err.to_string().contains("PostgreSQL 14"), "{err}");
        assert!(!err.is_retryable());
        let o = PluginOptions::for_server(&v("14.2"), &r).unwrap();
        assert!(o.streaming);
        assert!(o.options.contains(&("streaming", "true".into())));

        let mut r = request();
        r.origin = OriginFilter::None;
        assert!(PluginOptions::for_server(&v("15.3"), &r).is_err());
        let o = PluginOptions::for_server(&v("16.0"), &r).unwrap();
        assert!(o.options.contains(&("origin", "none".into())));
    }

    #[test]
    fn quotes_publication_names_and_values() {
        let r = PluginRequest {
            publications: vec!["a\"b".into(), "c'd".into()],
            ..PluginRequest::default()
        };
        let o = PluginOptions::for_server(&v("15.1"), &r).unwrap();
        assert_eq!(
            o.start_command("x", Lsn(0)).unwrap(),
            "START_REPLICATION SLOT \"x\" LOGICAL 0/0 (proto_version '3', publication_names '\"a\"\"b\",\"c''d\"')"
        );
        assert!(PluginOptions::for_server(&v("15.1"), &PluginRequest::default()).is_err());
        assert!(quote_ident("a\0").is_err());
    }

    #[test]
    fn create_slot_syntax_by_version() {
        let mut c = CreateSlot {
            name: "walrus".into(),
            temporary: false,
            snapshot: SnapshotAction::Export,
            failover: false,
        };
        for major in 10..=14 {
            assert_eq!(
                c.command(&v(&format!("{major}.0"))).unwrap(),
                "CREATE_REPLICATION_SLOT \"walrus\" LOGICAL pgoutput EXPORT_SNAPSHOT"
            );
        }
        for major in 15..=18 {
            assert_eq!(
                c.command(&v(&format!("{major}.0"))).unwrap(),
                "CREATE_REPLICATION_SLOT \"walrus\" LOGICAL pgoutput (SNAPSHOT 'export')"
            );
        }
        c.temporary = true;
        c.snapshot = SnapshotAction::NoExport;
        assert_eq!(
            c.command(&v("12.1")).unwrap(),
            "CREATE_REPLICATION_SLOT \"walrus\" TEMPORARY LOGICAL pgoutput NOEXPORT_SNAPSHOT"
        );
        c.temporary = false;
        c.snapshot = SnapshotAction::Export;
        c.failover = true;
        assert!(c.command(&v("16.3")).is_err());
        assert_eq!(
            c.command(&v("17.2")).unwrap(),
            "CREATE_REPLICATION_SLOT \"walrus\" LOGICAL pgoutput (SNAPSHOT 'export', FAILOVER true)"
        );
        c.failover = false;
        assert!(c.command(&v("9.6.24")).is_err());
    }
}
