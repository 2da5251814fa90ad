//! The Prometheus listener: rabbitmq_prometheus's families and labels, so existing dashboards and
//! alerts keep working when Warren replaces RabbitMQ. Warren-only (it starts its own broker).

use super::Mgmt;
use crate::common::*;

async fn scrape(m: &Mgmt, path: &str) -> String {
    let r = reqwest::get(format!("{}{path}", m.prometheus()))
        .await
        .expect("scrape");
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    let ct = r.headers()[reqwest::header::CONTENT_TYPE]
        .to_str()
        .expect("ascii")
        .to_string();
    assert!(ct.starts_with("text/plain"), "content-type {ct}");
    r.text().await.expect("text")
}

/// The value of the first sample whose line starts with `prefix` (name plus any labels).
fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn aggregated_and_per_object_metrics_follow_traffic() {
    let m = Mgmt::warren().await;
    let conn = connect(&m.amqp).await;
    let ch = open(&conn).await;
    let q = declare_queue(&ch, &unique("prom")).await;
    publish_all(&ch, &q, &["a", "b", "c"]).await;
    wait_for_count(&ch, &q, 3).await;

    let agg = scrape(&m, "/metrics").await;
    assert!(agg.contains("# TYPE rabbitmq_queue_messages_ready gauge"));
    assert_eq!(sample(&agg, "rabbitmq_queue_messages_ready "), Some(3.0));
    assert_eq!(sample(&agg, "rabbitmq_connections "), Some(1.0));
    assert!(sample(&agg, "rabbitmq_global_messages_received_total").unwrap_or(0.0) >= 3.0);
    assert!(agg.contains("rabbitmq_identity_info{"));

    let per = scrape(&m, "/metrics/per-object").await;
    let line = format!("rabbitmq_queue_messages_ready{{vhost=\"/\",queue=\"{q}\"}}");
    assert_eq!(sample(&per, &line), Some(3.0), "{per}");

    let detailed = scrape(&m, "/metrics/detailed?family=queue_coarse_metrics").await;
    let line = format!("rabbitmq_detailed_queue_messages_ready{{vhost=\"/\",queue=\"{q}\"}}");
    assert_eq!(sample(&detailed, &line), Some(3.0), "{detailed}");
    assert!(!detailed.contains("rabbitmq_detailed_connections "));
}
