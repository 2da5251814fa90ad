//! AMQPS with rustls: lapin connects over TLS with and without a client certificate, EXTERNAL logs in as the
//! certificate's CN, `fail_if_no_peer_cert` refuses clients without one, the plain listener can be off, and
//! certificates are reloaded without dropping open connections. Certificates are made in-process (rcgen).

use crate::common::*;
use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use lapin::{Connection, ConnectionProperties};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use std::path::PathBuf;

/// A CA, a server certificate for localhost / 127.0.0.1, and client certificates, as PEM files.
struct Pki {
    dir: PathBuf,
    ca_pem: String,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Drop for Pki {
    fn drop(&mut self) {
        // Every run of the suite left its certificates behind in the temp dir.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Pki {
    fn new(tag: &str) -> Pki {
        let dir = data_dir(tag);
        std::fs::create_dir_all(&dir).expect("pki dir");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "Warren test CA");
        let issuer =
            CertifiedIssuer::self_signed(params, KeyPair::generate().expect("ca key")).expect("ca");
        let ca_pem = issuer.pem();
        std::fs::write(dir.join("ca.pem"), &ca_pem).expect("write ca");
        let pki = Pki {
            dir,
            ca_pem,
            issuer,
        };
        pki.server("server");
        pki
    }

    /// A server certificate (files `{name}.pem`, `{name}.key`).
    fn server(&self, name: &str) {
        let params = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("server params");
        let key = KeyPair::generate().expect("server key");
        let cert = params.signed_by(&key, &self.issuer).expect("server cert");
        std::fs::write(self.dir.join(format!("{name}.pem")), cert.pem()).expect("write");
        std::fs::write(self.dir.join(format!("{name}.key")), key.serialize_pem()).expect("write");
    }

    /// A client certificate with subject CN=`cn`, as lapin takes it.
    fn client(&self, cn: &str) -> OwnedIdentity {
        self.client_dn(&[(DnType::CommonName, cn)])
    }

    /// A client certificate with this subject (in certificate order).
    fn client_dn(&self, subject: &[(DnType, &str)]) -> OwnedIdentity {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("client params");
        for (ty, v) in subject {
            params.distinguished_name.push(ty.clone(), *v);
        }
        let key = KeyPair::generate().expect("client key");
        let cert = params.signed_by(&key, &self.issuer).expect("client cert");
        OwnedIdentity::PKCS8 {
            pem: cert.pem().into_bytes(),
            key: key.serialize_pem().into_bytes(),
        }
    }

    fn tls(&self, verify_peer: bool, fail_if_no_peer_cert: bool) -> warren::config::Tls {
        warren::config::Tls {
            port: 0,
            cert: self.dir.join("server.pem"),
            key: self.dir.join("server.key"),
            ca: Some(self.dir.join("ca.pem")),
            verify_peer,
            fail_if_no_peer_cert,
        }
    }

    fn client_config(&self, identity: Option<OwnedIdentity>) -> OwnedTLSConfig {
        OwnedTLSConfig {
            identity,
            cert_chain: Some(self.ca_pem.clone()),
        }
    }
}

async fn warren_tls(tls: warren::config::Tls, plain: bool) -> warren::Server {
    warren_tls_with(tls, plain, true, "common_name").await
}

async fn warren_tls_with(
    tls: warren::config::Tls,
    plain: bool,
    external: bool,
    login_from: &str,
) -> warren::Server {
    let mut auth_mechanisms = vec!["PLAIN".to_string(), "AMQPLAIN".to_string()];
    if external {
        auth_mechanisms.push("EXTERNAL".into());
    }
    let config = warren::Config {
        tls: Some(tls),
        tcp_listener: plain,
        auth_mechanisms,
        ssl_cert_login_from: login_from.into(),
        ..test_config()
    };
    warren::Server::start(config)
        .await
        .expect("start Warren with TLS")
}

async fn connect_tls(url: &str, config: OwnedTLSConfig) -> lapin::Result<Connection> {
    let runtime = lapin::runtime::default_runtime().expect("runtime");
    within(Connection::connect_with_config(
        url,
        ConnectionProperties::default(),
        config,
        runtime,
    ))
    .await
}

fn amqps(server: &warren::Server, userinfo: &str, query: &str) -> String {
    let port = server.tls_port().expect("TLS port");
    format!("amqps://{userinfo}localhost:{port}/%2f{query}")
}

/// Round trip a message on a connection.
async fn round_trip(conn: &Connection) {
    let ch = open(conn).await;
    let q = declare_queue(&ch, "").await;
    publish(&ch, "", &q, b"over tls").await;
    assert_eq!(get_wait(&ch, &q, true).await.delivery.data, b"over tls");
}

#[tokio::test]
async fn lapin_talks_amqps_with_plain_credentials() {
    let pki = Pki::new("tls-plain");
    let server = warren_tls(pki.tls(false, false), true).await;
    let conn = connect_tls(&amqps(&server, "guest:guest@", ""), pki.client_config(None))
        .await
        .expect("TLS connection");
    round_trip(&conn).await;
    // The management API reports the connection as TLS.
    let c = server.broker().connections();
    let tls: Vec<_> = c
        .iter()
        .filter_map(|s| s.as_any().downcast_ref::<warren::connection::ConnShared>())
        .filter_map(|s| s.tls)
        .collect();
    assert_eq!(tls.len(), 1);
    assert!(tls[0] == "tlsv1.3" || tls[0] == "tlsv1.2");
}

#[tokio::test]
async fn external_logs_in_as_the_certificate_common_name() {
    let pki = Pki::new("tls-external");
    let server = warren_tls(pki.tls(true, false), true).await;
    // guest is loopback-only, and we connect over loopback: EXTERNAL with CN=guest is guest.
    let conn = connect_tls(
        &amqps(&server, "", "?auth_mechanism=external"),
        pki.client_config(Some(pki.client("guest"))),
    )
    .await
    .expect("EXTERNAL login");
    round_trip(&conn).await;
    let users: Vec<String> = server
        .broker()
        .connections()
        .iter()
        .filter_map(|s| s.user().map(str::to_string))
        .collect();
    assert_eq!(users, vec!["guest".to_string()]);

    // A certificate naming a user that does not exist is refused.
    let err = connect_tls(
        &amqps(&server, "", "?auth_mechanism=external"),
        pki.client_config(Some(pki.client("nobody"))),
    )
    .await
    .expect_err("unknown user");
    assert_connection_closed(
        &err,
        403,
        "ACCESS_REFUSED - Login was refused using authentication mechanism EXTERNAL. For details see the broker logfile.",
    );
}

#[tokio::test]
async fn external_is_not_offered_without_a_verified_certificate() {
    let pki = Pki::new("tls-no-external");
    let server = warren_tls(pki.tls(true, false), true).await;
    // No client certificate: EXTERNAL is not offered, so RabbitMQ (and Warren) close the socket.
    let err = connect_tls(
        &amqps(&server, "", "?auth_mechanism=external"),
        pki.client_config(None),
    )
    .await
    .expect_err("EXTERNAL without a certificate");
    assert!(
        !matches!(err.kind(), lapin::ErrorKind::ProtocolError(_)),
        "expected the socket to close, got {err:?}"
    );
    // Plain credentials still work on the same listener.
    let conn = connect_tls(&amqps(&server, "guest:guest@", ""), pki.client_config(None))
        .await
        .expect("PLAIN over TLS without a client certificate");
    round_trip(&conn).await;
}

#[tokio::test]
async fn fail_if_no_peer_cert_refuses_clients_without_one() {
    let pki = Pki::new("tls-required");
    let server = warren_tls(pki.tls(true, true), true).await;
    let res = connect_tls(&amqps(&server, "guest:guest@", ""), pki.client_config(None)).await;
    assert!(res.is_err(), "a client without a certificate was accepted");
    let conn = connect_tls(
        &amqps(&server, "guest:guest@", ""),
        pki.client_config(Some(pki.client("someone"))),
    )
    .await
    .expect("client with a certificate");
    round_trip(&conn).await;
    // Everyone else is unaffected.
    let plain = connect(&TestBroker::from_url(server.amqp_url())).await;
    round_trip(&plain).await;
}

#[tokio::test]
async fn the_plain_listener_can_be_turned_off() {
    let pki = Pki::new("tls-only");
    let server = warren_tls(pki.tls(false, false), false).await;
    assert_eq!(Some(server.port()), server.tls_port());
    let conn = connect_tls(&amqps(&server, "guest:guest@", ""), pki.client_config(None))
        .await
        .expect("TLS");
    round_trip(&conn).await;
    // The only port speaks TLS: a plain AMQP client gets no AMQP answer.
    let plain = try_connect_with(&TestBroker::from_url(server.amqp_url()), |_| {}).await;
    assert!(plain.is_err());
}

#[tokio::test]
async fn certificates_reload_without_dropping_connections() {
    let pki = Pki::new("tls-reload");
    let server = warren_tls(pki.tls(false, false), true).await;
    let before = connect_tls(&amqps(&server, "guest:guest@", ""), pki.client_config(None))
        .await
        .expect("TLS");
    // A new server certificate from another CA: after the reload, clients trusting only the old CA fail.
    let other = Pki::new("tls-reload-other");
    for f in ["server.pem", "server.key"] {
        std::fs::copy(other.dir.join(f), pki.dir.join(f)).expect("swap certificate");
    }
    server.reload_tls().expect("reload");
    assert!(
        connect_tls(&amqps(&server, "guest:guest@", ""), pki.client_config(None))
            .await
            .is_err(),
        "the old certificate is still served"
    );
    let after = connect_tls(
        &amqps(&server, "guest:guest@", ""),
        other.client_config(None),
    )
    .await
    .expect("new certificate");
    round_trip(&after).await;
    // The connection made before the reload is still up.
    round_trip(&before).await;
    // A broken file leaves the working configuration in place.
    std::fs::write(pki.dir.join("server.pem"), "not a certificate").expect("write");
    assert!(server.reload_tls().is_err());
    connect_tls(
        &amqps(&server, "guest:guest@", ""),
        other.client_config(None),
    )
    .await
    .expect("still serving the last good certificate");
}

#[tokio::test]
async fn external_must_be_enabled_like_rabbitmqs_plugin() {
    let pki = Pki::new("tls-external-off");
    let server = warren_tls_with(pki.tls(true, false), true, false, "common_name").await;
    let err = connect_tls(
        &amqps(&server, "", "?auth_mechanism=external"),
        pki.client_config(Some(pki.client("guest"))),
    )
    .await
    .expect_err("EXTERNAL is not offered unless configured");
    assert!(
        !matches!(err.kind(), lapin::ErrorKind::ProtocolError(_)),
        "expected the socket to close, got {err:?}"
    );
}

#[tokio::test]
async fn external_with_distinguished_names_uses_rabbitmqs_format() {
    let pki = Pki::new("tls-external-dn");
    let server = warren_tls_with(pki.tls(true, false), true, true, "distinguished_name").await;
    // rcgen writes the subject as CN, C, O; RabbitMQ's form lists the RDNs last first.
    let dn = "O=Example\\, Inc.,C=US,CN=app";
    server
        .broker()
        .run(
            warren::broker::Command::PutUser {
                name: dn.into(),
                password: warren::broker::StoredPassword::None,
                tags: Vec::new(),
            },
            &warren::broker::Actor::internal(),
        )
        .await
        .expect("add user");
    server
        .broker()
        .run(
            warren::broker::Command::SetPermissions {
                vhost: "/".into(),
                user: dn.into(),
                configure: ".*".into(),
                write: ".*".into(),
                read: ".*".into(),
            },
            &warren::broker::Actor::internal(),
        )
        .await
        .expect("permissions");
    let id = pki.client_dn(&[
        (DnType::CountryName, "US"),
        (DnType::OrganizationName, "Example, Inc."),
        (DnType::CommonName, "app"),
    ]);
    let conn = connect_tls(
        &amqps(&server, "", "?auth_mechanism=external"),
        pki.client_config(Some(id)),
    )
    .await
    .expect("EXTERNAL as the certificate's DN");
    round_trip(&conn).await;
}
