//! The web page of `img2prompt serve` in a real browser: Debian's `chromium` driven through
//! WebDriver (`chromium-driver`, installed by scripts/setup.sh). It loads `/`, uploads a photo
//! through the file picker, and checks that the page shows the prompt and the neighbours the
//! API returns for the same image. A screenshot is kept in the temp dir as an artifact.
//!
//! `IMG2PROMPT_SKIP_BROWSER=1` skips it (e.g. on a machine without chromium); CI does not set it.

mod common;
mod serve_common;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{ClientBuilder, Locator};
use serde_json::{Value, json};
use serve_common::{Server, images, small_index};

/// `chromedriver` on a free loopback port, killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start() -> Driver {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver not found: apt-get install chromium chromium-driver (scripts/setup.sh does)");
        Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_the_prediction_of_an_uploaded_image() {
    if std::env::var_os("IMG2PROMPT_SKIP_BROWSER").is_some() {
        eprintln!("IMG2PROMPT_SKIP_BROWSER is set: skipped");
        return;
    }
    let index = small_index("serve-browser-index");
    let server = Server::start(&index, &[]).await;
    let driver = Driver::start();
    let image = images()[0].canonicalize().expect("the fixture image");

    // What the API says for this image.
    let expected: Value = reqwest::Client::new()
        .post(server.at("/v1/predict?neighbors=10"))
        .header("content-type", "image/png")
        .body(std::fs::read(&image).unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    let mut capabilities = serde_json::Map::new();
    let mut chrome = json!({
        "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1280,900"]
    });
    if std::path::Path::new("/usr/bin/chromium").exists() {
        chrome["binary"] = json!("/usr/bin/chromium");
    }
    capabilities.insert("goog:chromeOptions".into(), chrome);
    let start = Instant::now();
    let browser = loop {
        match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities.clone())
            .connect(&driver.url)
            .await
        {
            Ok(client) => break client,
            Err(e) if start.elapsed() < Duration::from_secs(30) => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("cannot start chromium through chromedriver: {e}"),
        }
    };

    let outcome = async {
        browser.goto(&server.at("/")).await?;
        assert_eq!(browser.title().await?, "img2prompt");
        browser
            .find(Locator::Css("#file"))
            .await?
            .send_keys(image.to_str().unwrap())
            .await?;
        let prompt = browser
            .wait()
            .at_most(Duration::from_secs(60))
            .for_element(Locator::Css("#prompt:not(:empty)"))
            .await?
            .text()
            .await?;
        let rows = browser.find_all(Locator::Css("#neighbours tr")).await?;
        let mut shown = Vec::new();
        for row in &rows {
            let cells = row.find_all(Locator::Css("td")).await?;
            shown.push(cells[2].text().await?);
        }
        let preview = browser
            .find(Locator::Css("#preview"))
            .await?
            .attr("src")
            .await?;
        let status = browser.find(Locator::Css("#status")).await?.text().await?;
        let screenshot = browser.screenshot().await?;
        Ok::<_, fantoccini::error::CmdError>((prompt, shown, preview, status, screenshot))
    }
    .await;
    let _ = browser.close().await;
    let (prompt, shown, preview, status, screenshot) = outcome.expect("browser session");

    let artifact = std::env::temp_dir().join("img2prompt-serve-page.png");
    std::fs::write(&artifact, &screenshot).unwrap();
    eprintln!("screenshot: {}", artifact.display());
    assert!(screenshot.starts_with(b"\x89PNG"), "a PNG screenshot");

    assert_eq!(prompt, expected["prompt"].as_str().unwrap());
    let want: Vec<&str> = expected["neighbors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["prompt"].as_str().unwrap())
        .collect();
    assert_eq!(shown, want, "the page lists the API's neighbours in order");
    assert_eq!(shown.len(), 10);
    assert!(
        preview.is_some_and(|src| src.starts_with("blob:")),
        "the image is shown"
    );
    assert!(status.starts_with("Done"), "status {status:?}");
}
