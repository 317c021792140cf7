//! HTTP/2 (prior knowledge, over cleartext TCP) with a real client, the h2
//! crate: the server caps the streams one connection may open, and closes a
//! connection that stays idle as an HTTP/1 keep-alive connection would be.

use std::time::{Duration, Instant};

use wasgi_tests::{apps, Wasgi};

/// An HTTP/2 connection to `addr`; the connection's task runs on `rt`.
async fn connect(addr: &str) -> (h2::client::SendRequest<bytes::Bytes>, tokio::task::JoinHandle<Result<(), h2::Error>>) {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (client, connection) = h2::client::handshake(tcp).await.expect("HTTP/2 handshake");
    (client, tokio::spawn(connection))
}

/// GET `path` on the connection; the status and body.
async fn get(client: &mut h2::client::SendRequest<bytes::Bytes>, path: &str) -> (u16, String) {
    let request = http::Request::get(format!("http://localhost{path}")).body(()).unwrap();
    let client = client.clone().ready().await.expect("the connection takes a request");
    let mut client = client;
    let (response, _) = client.send_request(request, true).expect("send the request");
    let response = response.await.expect("a response");
    let status = response.status().as_u16();
    let mut body = response.into_body();
    let mut text = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.expect("body data");
        let _ = body.flow_control().release_capacity(chunk.len());
        text.extend_from_slice(&chunk);
    }
    (status, String::from_utf8_lossy(&text).into_owned())
}

#[test]
fn http2_advertises_its_stream_cap_and_closes_idle_connections() {
    let script = apps().join("features.wsgi");
    // header_read_timeout is also the idle timeout of a connection.
    let server = Wasgi::start(&[script.to_str().unwrap(), "--instances", "1", "--header-read-timeout", "2"]);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let (mut client, connection) = connect(&server.addr).await;
        assert_eq!(get(&mut client, "/probe/h2").await, (200, "probe\n".to_owned()));
        // The server's SETTINGS arrived before its response.
        assert_eq!(client.current_max_send_streams(), 100, "SETTINGS_MAX_CONCURRENT_STREAMS");

        // Idle past the timeout: the server says GOAWAY and closes.
        let idle_since = Instant::now();
        let ended = tokio::time::timeout(Duration::from_secs(30), connection).await;
        assert!(ended.is_ok(), "an idle HTTP/2 connection was still open after 30 s (idle timeout 2 s)");
        assert!(idle_since.elapsed() >= Duration::from_secs(1), "closed before it was idle for long: {:?}", idle_since.elapsed());

        // A connection busy with a request is not idle: a response slower
        // than the idle timeout still arrives whole.
        let (mut client, _connection) = connect(&server.addr).await;
        let (status, body) = get(&mut client, "/sleep?s=3").await;
        assert_eq!(status, 200, "{body}");
    });
}
