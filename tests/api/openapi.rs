//! `/openapi.json` against the server that serves it: every route the code registers is in the
//! document with exactly the methods the server answers, the document is valid OpenAPI 3.1 to
//! an independent validator, HEAD answers every GET route as its GET does, and Schemathesis,
//! fuzzing the sandbox from the document, finds nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use reqwest::{header, Method, StatusCode};
use serde_json::Value;

use crate::helpers::{rp_python, TestApp, ADMIN_TOKEN};
use crate::oidc::provider_with;

/// The methods a route may have (HEAD follows GET, OPTIONS is CORS': neither is listed).
const METHODS: [Method; 5] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
];

/// The sandbox with every optional route live: the admin API, the OpenID Connect provider and
/// the token center.
async fn full_app() -> TestApp {
    provider_with(&[
        ("WXLOGIN_ADMIN_TOKEN", ADMIN_TOKEN),
        (
            "WXLOGIN_TOKEN_CLIENTS",
            "fuzzer:a-token-center-key-for-the-openapi-tests-0123",
        ),
    ])
    .await
}

async fn document(app: &TestApp) -> Value {
    let response = app.get("/openapi.json").await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

/// (path template, method) of every operation in the document.
fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|key| METHODS.iter().any(|m| m.as_str().eq_ignore_ascii_case(key)))
                .map(|method| (path.clone(), method.to_uppercase()))
        })
        .collect()
}

/// Every path the HTTP modules register, read from their wiring in src/http: the path of each
/// `.route("…", …)` and `web::resource(…)` (a literal, or a `const` of those files).
fn registered_paths() -> BTreeSet<String> {
    let mut sources = Vec::new();
    collect_sources(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http"),
        &mut sources,
    );
    let code = sources.join("\n");
    let consts: BTreeMap<&str, &str> = code
        .lines()
        .filter_map(|line| {
            let rest = line.trim().split_once("const ")?.1;
            let (name, value) = rest.split_once(": &str = \"")?;
            Some((name, value.strip_suffix("\";")?))
        })
        .filter(|(_, value)| value.starts_with('/'))
        .collect();
    assert!(
        !code.contains("web::scope("),
        "the scan reads full paths: register routes with theirs, not in a web::scope"
    );
    let mut paths = BTreeSet::new();
    // rustfmt may break the line after `.route(`.
    for argument in code.split(".route(").skip(1) {
        let argument = argument.trim_start();
        if let Some(literal) = argument.strip_prefix('"') {
            paths.insert(literal.split('"').next().unwrap().to_owned());
        } else if let Some(path) = argument
            .split(',')
            .next()
            .and_then(|name| consts.get(name.trim().rsplit("::").next().unwrap()))
        {
            paths.insert((*path).to_owned());
        }
    }
    for argument in code.split("web::resource(").skip(1) {
        let argument = argument.split(')').next().unwrap().trim();
        let path = match argument.strip_prefix('"') {
            Some(literal) => literal.trim_end_matches('"'),
            None => {
                let name = argument.rsplit("::").next().unwrap();
                consts
                    .get(name)
                    .unwrap_or_else(|| panic!("web::resource({argument}): no such path const"))
            }
        };
        paths.insert(path.to_owned());
    }
    paths
}

fn collect_sources(dir: &Path, sources: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_sources(&path, sources);
        } else if path.extension().is_some_and(|e| e == "rs") {
            sources.push(std::fs::read_to_string(&path).unwrap());
        }
    }
}

/// `template` with each `{param}` filled in.
fn concrete(template: &str, value: &str) -> String {
    let mut path = String::new();
    let mut rest = template;
    while let Some((before, after)) = rest.split_once('{') {
        path.push_str(before);
        rest = after.split_once('}').unwrap().1;
        path.push_str(value);
    }
    path + rest
}

/// Whether the server routes `method` on `path` to a handler: an unrouted request is the
/// default service's 404 `no such endpoint`, or a resource's 405.
async fn is_routed(app: &TestApp, method: Method, path: &str) -> bool {
    let response = app
        .client
        .request(method, app.url(path))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    !(status == StatusCode::METHOD_NOT_ALLOWED
        || status == StatusCode::NOT_FOUND && body["message"] == "no such endpoint")
}

#[tokio::test]
async fn the_document_has_every_registered_route_with_the_methods_it_answers() {
    let app = full_app().await;
    let documented = operations(&document(&app).await);
    let documented_paths: BTreeSet<String> = documented.iter().map(|(p, _)| p.clone()).collect();
    let registered = registered_paths();
    assert!(registered.contains("/api/qrcode"), "{registered:?}");
    let undocumented: Vec<_> = registered.difference(&documented_paths).collect();
    let unregistered: Vec<_> = documented_paths.difference(&registered).collect();
    assert!(
        undocumented.is_empty() && unregistered.is_empty(),
        "registered but not in /openapi.json: {undocumented:?}; in it but not registered: {unregistered:?}"
    );
    let mut answered = BTreeSet::new();
    for template in &registered {
        let path = concrete(template, "x");
        for method in METHODS {
            if is_routed(&app, method.clone(), &path).await {
                answered.insert((template.clone(), method.to_string()));
            }
        }
    }
    assert_eq!(
        answered, documented,
        "the methods the server answers (left) and the document's (right) differ"
    );
}

#[tokio::test]
#[cfg_attr(
    not(has_rp_venv),
    ignore = "needs the venv tests/rp/.venv (README: Prerequisites)"
)]
async fn the_document_is_valid_openapi_3_1() {
    let app = full_app().await;
    let doc = document(&app).await;
    assert_eq!(doc["openapi"], "3.1.0");
    let python = validator_python("openapi_spec_validator");
    let file = app.data_dir.path().join("openapi.json");
    std::fs::write(&file, doc.to_string()).unwrap();
    let output = Command::new(python)
        .args([
            "-c",
            "import json, sys\n\
             from openapi_spec_validator import validate\n\
             from openapi_spec_validator.validation import OpenAPIV31SpecValidator\n\
             validate(json.load(open(sys.argv[1])), cls=OpenAPIV31SpecValidator)",
        ])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The venv's Python, with `module` installed (tests/rp/requirements.txt); tests that use it
/// need `has_rp_venv`.
fn validator_python(module: &str) -> std::path::PathBuf {
    let python = rp_python();
    let found = Command::new(&python)
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "tests/rp/.venv lacks {module}: tests/rp/.venv/bin/python -m pip install -r tests/rp/requirements.txt"
    );
    python
}

/// The headers that must be the same for a HEAD and its GET (those that differ per request
/// or per body's framing aside).
fn comparable(headers: &header::HeaderMap) -> BTreeMap<String, String> {
    headers
        .iter()
        .filter(|(name, _)| {
            !matches!(
                name.as_str(),
                "date" | "x-request-id" | "set-cookie" | "content-length" | "transfer-encoding"
            )
        })
        .map(|(name, value)| (name.to_string(), value.to_str().unwrap().to_owned()))
        .collect()
}

#[tokio::test]
async fn head_answers_every_get_route_as_its_get_does_and_at_once() {
    let app = full_app().await;
    let doc = document(&app).await;
    // A live scene of this client's, so the long-poll and the event stream would hold.
    let scene = app.create_qr().await.scene_id;
    // One connection for every request: a HEAD whose answer never ended would stall the next,
    // and the timeout says which.
    let client = crate::helpers::browser_client_builder()
        .pool_max_idle_per_host(1)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let get_routes: Vec<_> = operations(&doc)
        .into_iter()
        .filter(|(_, method)| method == "GET")
        .map(|(path, _)| path)
        .collect();
    assert!(get_routes.len() > 10, "{get_routes:?}");
    for template in get_routes {
        let operation = &doc["paths"][&template]["get"];
        let path = concrete(&template, &scene);
        // The longest hold each query parameter allows (a long-poll's `wait`).
        let longest: Vec<String> = operation["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["in"] == "query")
            .filter_map(|p| {
                Some(format!(
                    "{}={}",
                    p["name"].as_str()?,
                    p["schema"]["maximum"].as_u64()?
                ))
            })
            .collect();
        let send = |method: Method, query: String| {
            client
                .request(method, app.url(&format!("{path}{query}")))
                .bearer_auth(ADMIN_TOKEN)
                .send()
        };
        let get = send(Method::GET, String::new()).await.unwrap();
        let query = if longest.is_empty() {
            String::new()
        } else {
            format!("?{}", longest.join("&"))
        };
        let head = send(Method::HEAD, query)
            .await
            .unwrap_or_else(|e| panic!("HEAD {template} was not answered at once: {e}"));
        assert_eq!(head.status(), get.status(), "HEAD {template}");
        assert_eq!(
            comparable(head.headers()),
            comparable(get.headers()),
            "HEAD {template}"
        );
        assert!(
            head.bytes().await.unwrap().is_empty(),
            "HEAD {template} has a body"
        );
        // The next request on the connection is answered: the HEAD's answer has ended.
        let next = client
            .head(app.url("/healthz"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("after HEAD {template}, the connection stalled: {e}"));
        assert_eq!(next.status(), StatusCode::OK);
    }
}

#[tokio::test]
#[cfg_attr(
    not(has_rp_venv),
    ignore = "needs the venv tests/rp/.venv (README: Prerequisites)"
)]
async fn schemathesis_finds_nothing_fuzzing_the_sandbox() {
    let python = validator_python("schemathesis");
    let app = full_app().await;
    let schemathesis = python.with_file_name("schemathesis");
    let report = app.data_dir.path().join("schemathesis");
    std::fs::create_dir_all(&report).unwrap();
    // Run in a directory of its own: Schemathesis leaves files where it runs.
    let output = Command::new(&python)
        .arg(&schemathesis)
        .args(schemathesis_args(&app.url("")))
        .current_dir(&report)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "Schemathesis found problems:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // What docs/SECURITY.md reports: the cases generated.
    let summary = stdout
        .lines()
        .filter(|line| line.contains("generated") || line.contains("passed"))
        .collect::<Vec<_>>()
        .join("\n");
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!("schemathesis:\n{summary}\n").as_bytes(),
    );
}

/// The run docs/SECURITY.md records.
fn schemathesis_args(base: &str) -> Vec<String> {
    [
        "run",
        &format!("{base}/openapi.json"),
        "--url",
        base,
        "--checks",
        "not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance",
        "--max-examples",
        "30",
        "--seed",
        "19",
        "--header",
        &format!("Authorization: Bearer {ADMIN_TOKEN}"),
        "--generation-database",
        "none",
        "--no-color",
    ]
    .map(str::to_owned)
    .to_vec()
}
