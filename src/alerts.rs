//! The alert webhook: every transition the watchdog reports (an alert firing, changing
//! severity, or resolving) is POSTed once as JSON to `[alerts] webhook_url`, in walrus's
//! own shape or Slack's (`[alerts] webhook_format`). The watchdog already logged it.
//!
//! Deliveries run in order on one task, so a resolve never overtakes its firing; a failed
//! delivery is retried a few times with a short backoff, then logged and counted
//! (`walrus_webhook_failures_total`) — the alert stays visible in the log and `/status`.

use std::time::Duration;

use tokio::sync::mpsc;
use tracing::Instrument;
use walrus_core::alert::{Alert, AlertStatus, Severity};
use walrus_core::config::{AlertsConfig, WebhookFormat};
use walrus_core::telemetry;

const ATTEMPTS: u32 = 3;

/// Delivers alerts from `rx` until the channel closes.
pub async fn run(cfg: AlertsConfig, slot: String, mut rx: mpsc::UnboundedReceiver<Alert>) {
    let span = tracing::info_span!("alerts", slot = %slot);
    async move {
        let Some(url) = cfg.webhook_url.clone() else {
            // Drain, so the watchdog never blocks on a full channel.
            while rx.recv().await.is_some() {}
            return;
        };
        let client = match reqwest::Client::builder()
            .timeout(Duration::from_millis(cfg.webhook_timeout_ms))
            .user_agent(concat!("walrus/", env!("CARGO_PKG_VERSION")))
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot build the webhook client; alerts go to the log only");
                while rx.recv().await.is_some() {}
                return;
            }
        };
        while let Some(alert) = rx.recv().await {
            let body = match cfg.webhook_format {
                WebhookFormat::Json => json_payload(&alert),
                WebhookFormat::Slack => slack_payload(&alert),
            };
            let mut delay = Duration::from_millis(200);
            for attempt in 1..=ATTEMPTS {
                let result = client.post(url.expose()).json(&body).send().await;
                match result.and_then(|r| r.error_for_status()) {
                    Ok(_) => {
                        tracing::debug!(alert_id = %alert.id, "webhook delivered");
                        break;
                    }
                    Err(e) if attempt < ATTEMPTS => {
                        tracing::debug!(error = %e, attempt, "webhook failed; retrying");
                        tokio::time::sleep(delay).await;
                        delay *= 2;
                    }
                    Err(e) => {
                        metrics::counter!(telemetry::WEBHOOK_FAILURES_TOTAL).increment(1);
                        // The URL may hold a secret (Slack's does): never log it.
                        tracing::warn!(alert_id = %alert.id, error = %without_url(&e), "alert webhook failed");
                    }
                }
            }
        }
    }
    .instrument(span)
    .await
}

fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(url) = e.url() {
        s = s.replace(url.as_str(), "<webhook_url>");
    }
    s
}

/// The webhook body in walrus's own shape: the alert object itself.
pub fn json_payload(alert: &Alert) -> serde_json::Value {
    serde_json::to_value(alert).unwrap_or(serde_json::Value::Null)
}

/// The webhook body in the shape Slack's incoming webhooks (and Mattermost, Rocket.Chat)
/// accept: a `text` fallback and one coloured attachment with fields.
pub fn slack_payload(alert: &Alert) -> serde_json::Value {
    let (icon, color) = match (alert.status, alert.severity) {
        (AlertStatus::Resolved, _) => ("RESOLVED", "good"),
        (AlertStatus::Firing, Severity::Critical) => ("CRITICAL", "danger"),
        (AlertStatus::Firing, Severity::Warning) => ("WARNING", "warning"),
    };
    let text = format!("[walrus {icon}] {}", alert.summary);
    serde_json::json!({
        "text": text,
        "attachments": [{
            "color": color,
            "fallback": text,
            "title": format!("{} on slot {}", alert.alert.as_str(), alert.slot),
            "text": alert.summary,
            "fields": [
                {"title": "slot", "value": alert.slot, "short": true},
                {"title": "severity", "value": alert.severity.as_str(), "short": true},
                {"title": "value", "value": format!("{}", alert.value), "short": true},
                {"title": "threshold", "value": format!("{}", alert.threshold), "short": true},
            ],
            "ts": alert.resolved_at_ms.unwrap_or(alert.started_at_ms) / 1000,
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use walrus_core::alert::{AlertBook, AlertKind, Condition};

    #[test]
    fn slack_shape() {
        let mut book = AlertBook::new();
        let t = book.update(
            vec![Condition {
                kind: AlertKind::SlotLag,
                slot: "old".into(),
                severity: Severity::Critical,
                value: 2.0,
                threshold: 1.0,
                summary: "slot old is far behind".into(),
            }],
            "walrus",
            1_700_000_000_000,
        );
        let p = slack_payload(&t[0]);
        assert!(p["text"]
            .as_str()
            .unwrap()
            .starts_with("[walrus CRITICAL] slot old"));
        assert_eq!(p["attachments"][0]["color"], "danger");
        assert_eq!(p["attachments"][0]["fields"][0]["value"], "old");
        assert_eq!(p["attachments"][0]["ts"], 1_700_000_000);
        let j = json_payload(&t[0]);
        assert_eq!(j["status"], "firing");
        assert_eq!(j["alert"], "slot_lag");
        assert_eq!(j["walrus_slot"], false);
        let r = book.update(vec![], "walrus", 1_700_000_060_000);
        assert_eq!(slack_payload(&r[0])["attachments"][0]["color"], "good");
    }
}
