//! Prepares the web console's assets (`src/admin/console/`) for embedding:
//! each script and stylesheet gets a content-hashed name (so browsers may
//! cache it forever), the page is rewritten to those names, and every asset
//! is gzipped here, once, at build time. `src/admin/console.rs` includes the
//! generated table.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

const DIR: &str = "src/admin/console";
/// (file, content type); the page comes last so it can name the others.
const ASSETS: &[(&str, &str)] = &[
    ("app.js", "text/javascript; charset=utf-8"),
    ("app.css", "text/css; charset=utf-8"),
];

fn main() {
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    println!("cargo:rerun-if-changed={DIR}");
    let mut table = String::from("&[\n");
    let mut page = read(&Path::new(DIR).join("index.html"));
    for (name, content_type) in ASSETS {
        let body = read(&Path::new(DIR).join(name));
        let hash = short_hash(&body);
        let (stem, ext) = name
            .rsplit_once('.')
            .expect("asset names have an extension");
        let url = format!("/assets/{stem}.{hash}.{ext}");
        let placeholder = format!("{{{{{name}}}}}");
        assert!(
            page.contains(&placeholder),
            "index.html does not name {placeholder}"
        );
        page = page.replace(&placeholder, &url);
        entry(
            &mut table,
            &out,
            &url,
            content_type,
            body.as_bytes(),
            &hash,
            true,
        );
    }
    let hash = short_hash(&page);
    entry(
        &mut table,
        &out,
        "/",
        "text/html; charset=utf-8",
        page.as_bytes(),
        &hash,
        false,
    );
    table.push(']');
    std::fs::write(out.join("console_assets.rs"), table).expect("write the asset table");
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn short_hash(body: &str) -> String {
    let digest = Sha256::digest(body.as_bytes());
    digest[..6].iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Writes the asset and its gzip into OUT_DIR and adds its row to `table`.
fn entry(
    table: &mut String,
    out: &Path,
    url: &str,
    content_type: &str,
    body: &[u8],
    hash: &str,
    immutable: bool,
) {
    let file = if url == "/" {
        "index.html".to_string()
    } else {
        url.trim_start_matches("/assets/").to_string()
    };
    std::fs::write(out.join(&file), body).expect("write an asset");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(body).expect("gzip in memory");
    let gz = gz.finish().expect("gzip in memory");
    std::fs::write(out.join(format!("{file}.gz")), gz).expect("write a gzipped asset");
    let _ = writeln!(
        table,
        "    Asset {{ path: {url:?}, content_type: {content_type:?}, hash: {hash:?}, immutable: {immutable}, \
         body: include_bytes!(concat!(env!(\"OUT_DIR\"), \"/{file}\")), \
         gzip: include_bytes!(concat!(env!(\"OUT_DIR\"), \"/{file}.gz\")) }},"
    );
}
