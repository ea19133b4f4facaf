//! The admin listener's HTTP behaviour over real sockets: refusals that
//! reach the client even while it is still sending.

mod common;

use std::io::{Read, Write};

use common::admin::{start, temp_dir};
use common::{connect_buffered, header, read_response};

#[test]
fn a_2_mib_body_without_expect_reads_its_413() {
    let gw = start(&temp_dir("admin-linger"), &[]);
    let (mut s, mut r) = connect_buffered(gw.admin);
    let body = vec![b'a'; 2 << 20];
    let head = format!(
        "POST /api/v1/gateways HTTP/1.1\r\nHost: admin\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&body[..64 << 10]).unwrap();
    // By now the 413 is answered. The rest of the body still goes out: the
    // server reads and discards what it refused instead of closing with
    // unread bytes, which resets the connection under the client.
    std::thread::sleep(std::time::Duration::from_millis(300));
    s.write_all(&body[64 << 10..])
        .expect("the server keeps reading the refused body");
    let (status, headers, answer) = read_response(&mut r).expect("the 413, not a reset");
    assert_eq!(status, 413, "{}", String::from_utf8_lossy(&answer));
    assert_eq!(header(&headers, "connection"), Some("close"));
    let v = common::json_body(&answer);
    assert!(
        v["error"].as_str().unwrap().contains("1 MiB"),
        "the message names the limit: {v}"
    );
    // Then the server's side is closed: EOF, not more bytes.
    let mut rest = Vec::new();
    assert_eq!(r.read_to_end(&mut rest).unwrap_or(0), 0);
    // Nothing was created.
    let (status, list) = common::admin::call(gw.admin, "GET", "/api/v1/gateways", None, None);
    assert_eq!(status, 200);
    assert_eq!(list["count"], 0, "{list}");
    gw.stop();
}
