//! Reloading the configuration without a restart: SIGHUP and `/admin` apply the admin token, the
//! limits and the log level, name the keys that need a restart, and a file with an error changes
//! nothing.

use std::time::{Duration, Instant};

use crate::support::web::{Browser, TOKEN, act, sign_in};
use crate::support::*;

async fn delete_list(server: &Server, token: &str) -> u16 {
    client()
        .delete(server.url("/cache/list"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn wait_for_log(server: &Server, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.logs().contains(needle) {
        assert!(Instant::now() < deadline, "no {needle:?} in:\n{}", server.logs());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn sighup_applies_live_keys_names_the_rest_and_refuses_a_broken_file() {
    let data = temp_dir();
    let file = data.path().join("pkgmirror.toml");
    let first = format!("[server]\nadmin_token = \"{TOKEN}\"\n[log]\nlevel = \"info\"\n");
    std::fs::write(&file, &first).unwrap();
    let mut launch = Launch::default();
    launch
        .args
        .extend(["--config".to_owned(), file.display().to_string()]);
    // RUST_LOG would stand in for log.level.
    launch.env("RUST_LOG", "");
    let server = Server::start(data.path(), &launch);
    assert_eq!(delete_list(&server, TOKEN).await, 200);

    // New token, a tight rate, a quieter log, and two keys that need a restart.
    std::fs::write(
        &file,
        "[server]\nadmin_token = \"second-token\"\n[pypi]\npage_timeout = \"10s\"\n\
         [storage]\nmax_size = \"1GiB\"\n\
         [limits]\nrequests_per_second = 1\nburst = 2\n[log]\nlevel = \"warn\"\n",
    )
    .unwrap();
    server.signal("HUP");
    wait_for_log(&server, "some changes need a restart");
    let logs = server.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("some changes need a restart"))
        .unwrap();
    assert!(
        line.contains("server.admin_token") && line.contains("limits.burst") && line.contains("log.level"),
        "{line}"
    );
    assert!(
        line.contains("pypi.page_timeout") && line.contains("storage.max_size"),
        "{line}"
    );

    // The old token is refused and the new one admitted.
    assert_eq!(delete_list(&server, TOKEN).await, 401);
    assert_eq!(delete_list(&server, "second-token").await, 200);
    // The new limits: two requests at once, then 429.
    let statuses: Vec<u16> = futures::future::join_all((0..4).map(|_| async {
        client()
            .get(server.url("/simple/"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }))
    .await;
    assert!(statuses.contains(&429), "{statuses:?}");
    // log.level = "warn": requests are no longer written to the log (429s are not warnings).
    let before = server.logs().matches("path=/nothing-here").count();
    assert_eq!(
        client()
            .get(server.url("/nothing-here"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
            / 100,
        4
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(server.logs().matches("path=/nothing-here").count(), before);

    // A file with an error changes nothing.
    std::fs::write(&file, "[limits]\nburst = \"many\"\n").unwrap();
    server.signal("HUP");
    wait_for_log(&server, "reload refused; nothing was changed");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(delete_list(&server, "second-token").await, 200);
}

#[tokio::test]
async fn the_admin_page_reloads_and_says_what_it_did() {
    let data = temp_dir();
    let file = data.path().join("pkgmirror.toml");
    std::fs::write(&file, format!("[server]\nadmin_token = \"{TOKEN}\"\n")).unwrap();
    let mut launch = Launch::default();
    launch
        .args
        .extend(["--config".to_owned(), file.display().to_string()]);
    let server = Server::start(data.path(), &launch);
    let mut browser = Browser::new(&server);
    let csrf = sign_in(&mut browser).await;

    std::fs::write(
        &file,
        format!("[server]\nadmin_token = \"{TOKEN}\"\n[limits]\ndownloads_per_client = 3\n[metrics]\nlisten = \"127.0.0.1:0\"\n"),
    )
    .unwrap();
    let (page, (_, _, outcome)) = act(&mut browser, &csrf, "reload", &[], "/admin").await;
    assert_eq!(
        outcome,
        "ok: applied: limits.downloads_per_client; needs a restart: metrics.listen"
    );
    assert!(
        page.body.contains("needs a restart: metrics.listen"),
        "the flash says it"
    );

    std::fs::write(&file, "[limits]\nburst = \"many\"\n").unwrap();
    let (_, (_, _, outcome)) = act(&mut browser, &csrf, "reload", &[], "/admin").await;
    assert!(
        outcome.starts_with("refused, nothing was changed: limits.burst"),
        "{outcome}"
    );
}
