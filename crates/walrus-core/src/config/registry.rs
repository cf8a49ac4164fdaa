//! `[format] key`/`value` and `[format.registry]`: Avro output and the Confluent-compatible
//! schema registry it registers its schemas with (`docs/avro.md`).
//!
//! ```toml
//! [format]
//! key = "avro"                         # "json" (default) | "avro"
//! value = "avro"                       # "json" (default) | "avro"
//! [format.registry]
//! url = "http://127.0.0.1:8081"
//! ```

use std::path::PathBuf;

use serde::Deserialize;

use super::{ConfigError, FormatConfig, Secret};

/// Default subject name strategy.
pub const DEFAULT_SUBJECT_NAME_STRATEGY: SubjectNameStrategy =
    SubjectNameStrategy::TopicNameStrategy;

/// How keys or values are encoded (Kafka Connect's `key.converter` / `value.converter`).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FormatKind {
    /// Debezium JSON (`JsonConverter`), with `[format] schemas_enable`.
    #[default]
    Json,
    /// Avro in the Confluent wire format, schemas in `[format.registry]`.
    Avro,
}

/// How a record's subject is named (Confluent's `key.subject.name.strategy` and
/// `value.subject.name.strategy`); Confluent's class names are accepted too.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub enum SubjectNameStrategy {
    /// `<topic>-key` / `<topic>-value` (the default).
    #[default]
    #[serde(alias = "io.confluent.kafka.serializers.subject.TopicNameStrategy")]
    TopicNameStrategy,
    /// The record's full name, e.g. `app.public.orders.Envelope`.
    #[serde(alias = "io.confluent.kafka.serializers.subject.RecordNameStrategy")]
    RecordNameStrategy,
    /// `<topic>-<record full name>`.
    #[serde(alias = "io.confluent.kafka.serializers.subject.TopicRecordNameStrategy")]
    TopicRecordNameStrategy,
}

/// `[format.registry]`: a Confluent-compatible schema registry (Confluent Schema Registry,
/// Apicurio Registry's `/apis/ccompat/v7`, Karapace).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// Base URL, e.g. `http://127.0.0.1:8081` or `http://apicurio:8080/apis/ccompat/v7`.
    pub url: String,
    /// Subject naming: `TopicNameStrategy` (default), `RecordNameStrategy`,
    /// `TopicRecordNameStrategy`.
    #[serde(default)]
    pub subject_name_strategy: SubjectNameStrategy,
    /// HTTP basic auth user.
    #[serde(default)]
    pub username: Option<String>,
    /// HTTP basic auth password (`${VAR}` works); never logged.
    #[serde(default)]
    pub password: Option<Secret>,
    /// PEM file of CA certificates to trust for an `https` URL (besides the system's).
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// PEM client certificate (chain) for mutual TLS; needs `key`.
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`.
    #[serde(default)]
    pub key: Option<PathBuf>,
}

impl FormatConfig {
    /// Whether keys or values are Avro.
    pub fn uses_avro(&self) -> bool {
        self.key == FormatKind::Avro || self.value == FormatKind::Avro
    }
}

/// Checks `[format]`'s Avro keys.
pub(super) fn validate(f: &FormatConfig) -> Result<(), ConfigError> {
    let bad = |key: &str, message: &str| ConfigError::Key {
        key: key.into(),
        message: message.into(),
    };
    match &f.registry {
        None if f.uses_avro() => Err(bad(
            "format.registry.url",
            "Avro output needs a schema registry: set [format.registry] url = \"http://host:8081\"",
        )),
        Some(r) => {
            if !(r.url.starts_with("http://") || r.url.starts_with("https://")) {
                return Err(bad(
                    "format.registry.url",
                    "expected an http:// or https:// URL",
                ));
            }
            if r.cert.is_some() != r.key.is_some() {
                return Err(bad(
                    if r.cert.is_some() {
                        "format.registry.key"
                    } else {
                        "format.registry.cert"
                    },
                    "a client certificate needs both format.registry.cert and format.registry.key",
                ));
            }
            if r.password.is_some() && r.username.is_none() {
                return Err(bad(
                    "format.registry.username",
                    "format.registry.password needs a username",
                ));
            }
            Ok(())
        }
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::*;

    const BASE: &str = r#"
topic_prefix = "app"
[source]
url = "postgres://user@127.0.0.1:5432/app"
tables = ["public.*"]
[sink]
type = "null"
"#;

    fn parse(extra: &str) -> Result<Config, ConfigError> {
        Config::parse_with_env(&format!("{BASE}{extra}"), |k| {
            (k == "REG_PW").then(|| "s3cret".to_string())
        })
    }

    #[test]
    fn the_minimal_avro_form_works() {
        let c = parse(
            "[format]\nkey = \"avro\"\nvalue = \"avro\"\n[format.registry]\nurl = \"http://127.0.0.1:8081\"\n",
        )
        .unwrap();
        assert_eq!(c.format.key, FormatKind::Avro);
        assert_eq!(c.format.value, FormatKind::Avro);
        let r = c.format.registry.unwrap();
        assert_eq!(r.url, "http://127.0.0.1:8081");
        assert_eq!(r.subject_name_strategy, DEFAULT_SUBJECT_NAME_STRATEGY);
        let c = parse("").unwrap();
        assert_eq!(c.format.key, FormatKind::Json);
        assert!(!c.format.uses_avro());
    }

    #[test]
    fn every_registry_key_parses_and_the_password_stays_secret() {
        let c = parse(
            "[format]\nvalue = \"avro\"\n[format.registry]\nurl = \"https://r:8081\"\n\
             subject_name_strategy = \"io.confluent.kafka.serializers.subject.RecordNameStrategy\"\n\
             username = \"u\"\npassword = \"${REG_PW}\"\nca = \"ca.pem\"\ncert = \"c.pem\"\nkey = \"k.pem\"\n",
        )
        .unwrap();
        let r = c.format.registry.as_ref().unwrap();
        assert_eq!(
            r.subject_name_strategy,
            SubjectNameStrategy::RecordNameStrategy
        );
        assert_eq!(r.password.as_ref().map(Secret::expose), Some("s3cret"));
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn mistakes_name_their_key() {
        let err = |extra: &str| parse(extra).unwrap_err().to_string();
        assert!(err("[format]\nvalue = \"avro\"\n").contains("format.registry.url"));
        assert!(err("[format]\nkey = \"avro\"\n").contains("format.registry.url"));
        assert!(err("[format]\nvalue = \"protobuf\"\n").contains("format.value"));
        assert!(
            err("[format.registry]\nurl = \"http://r\"\nurll = 1\n").contains("format.registry")
        );
        assert!(err("[format.registry]\nurl = \"r:8081\"\n").contains("format.registry.url"));
        assert!(
            err("[format.registry]\nurl = \"http://r\"\ncert = \"c.pem\"\n")
                .contains("format.registry.key")
        );
    }
}
