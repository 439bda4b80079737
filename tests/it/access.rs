//! `server.anonymous_read = false`: reads need an access token made with `pkgmirror token`,
//! sent as HTTP Basic (as pip sends the credentials of its index URL) or Bearer; wrong tokens
//! are logged and limited per client.

use std::time::Duration;

use crate::support::packages;
use crate::support::sandbox::{Client, Sandbox, install};
use crate::support::tools::{self, Tool, require, run_tool};
use crate::support::*;

#[tokio::test]
async fn reads_need_a_token_when_anonymous_reads_are_off() {
    let dists = packages::tree();
    let fake = FakeIndex::start();
    packages::serve(&fake, &dists);
    let data = temp_dir();
    let reader = token_command(
        data.path(),
        &["create", "--name", "reader", "--scope", "read"],
        &[],
    );
    let revoked = token_command(data.path(), &["create", "--name", "gone", "--scope", "read"], &[]);
    token_command(data.path(), &["revoke", "gone"], &[]);
    let mut launch = Launch::with_upstreams(&[&fake.url()], "10m");
    launch
        .env("PKGMIRROR__PYPI__ALLOW_PRIVATE_UPSTREAMS", "true")
        .env("PKGMIRROR__SERVER__ANONYMOUS_READ", "false");
    let server = Server::start(data.path(), &launch);
    let http = client();
    let page = server.url("/simple/app/");

    let anonymous = http.get(&page).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!(
        header(&anonymous, "www-authenticate"),
        "Basic realm=\"pkgmirror\", charset=\"UTF-8\""
    );
    assert_eq!(fake.hits("app/"), 0, "nothing is fetched for a refused read");
    // A refused request whose body is left unread ends its connection.
    let with_body = http
        .post(server.url("/indexes/internal/"))
        .body(vec![0u8; 100_000])
        .send()
        .await
        .unwrap();
    assert_eq!(with_body.status(), 401);
    assert_eq!(header(&with_body, "connection"), "close");
    assert_eq!(
        http.get(server.url("/health")).send().await.unwrap().status(),
        200
    );
    assert_eq!(
        http.get(server.url("/packages")).send().await.unwrap().status(),
        401,
        "the UI too"
    );

    let basic = http
        .get(&page)
        .basic_auth("__token__", Some(&reader))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 200);
    let bearer = http.get(&page).bearer_auth(&reader).send().await.unwrap();
    assert_eq!(bearer.status(), 200);
    let revoked = http
        .get(&page)
        .basic_auth("__token__", Some(&revoked))
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 401);

    // pip: refused without credentials, installs with the token in the index URL.
    if require(Tool::Pip).is_some() {
        let sandbox = Sandbox::new();
        let mut pip = sandbox.command(tools::path(Tool::Pip));
        pip.args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--index-url",
            &server.url("/simple/"),
            "-d",
        ])
        .arg(sandbox.path("d"))
        .arg("app");
        let run = run_tool(
            pip,
            "pip download app (no token)".into(),
            Duration::from_secs(120),
            "",
        )
        .await;
        assert!(!run.ok(), "{}", run.report());
        // pip reads a refused index page as one listing nothing.
        assert!(
            run.stderr.contains("No matching distribution found for app"),
            "{}",
            run.report()
        );
        let with_token =
            server
                .url("/simple/")
                .replacen("http://", &format!("http://__token__:{reader}@"), 1);
        install(Client::Pip, &with_token, &server).await;
    }

    // Wrong tokens: each logged; past the limit (five, the revoked one included) the client is
    // refused, right token or not.
    for _ in 0..4 {
        let wrong = http
            .get(&page)
            .basic_auth(
                "__token__",
                Some("pkgm_000000000000_".to_owned() + &"0".repeat(64)),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 401);
    }
    let limited = http
        .get(&page)
        .basic_auth("__token__", Some(&reader))
        .send()
        .await
        .unwrap();
    assert_eq!(limited.status(), 429);
    assert!(header(&limited, "retry-after").parse::<u64>().unwrap() >= 1);

    let (status, _) = server.terminate();
    assert!(status.success());
    let failures: Vec<String> = stored_admin_log(data.path())
        .into_iter()
        .filter(|(action, _)| action == "token-failed")
        .map(|(_, outcome)| outcome)
        .collect();
    // The revoked token, four wrong ones, then the first refusal over the limit.
    assert_eq!(failures.len(), 6, "{failures:?}");
    assert_eq!(failures.last().unwrap(), "rate limited");
}
