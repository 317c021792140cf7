//! Past one machine: the container image definition and the Kubernetes
//! manifests README shows. The manifests are read as Kubernetes reads them
//! (YAML) and checked against wasgi's own reading of the configuration they
//! carry: probes on the admin listener, the Service on the listener, the
//! preStop pause equal to shutdown_delay, the grace period covering it and
//! graceful_timeout, non-root on a read-only root filesystem with the cache
//! on a volume. Where a container runtime answers, the image is built and
//! serves.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wasgi::spec::listen::ListenAddr;
use wasgi_tests::{pip_packages, root, TempDir};

/// Every document of a YAML file, as JSON (PyYAML, as kubectl's YAML is).
fn yaml_documents(file: &Path) -> Vec<serde_json::Value> {
    let yaml = pip_packages("pyyaml", &["PyYAML==6.0.2"]);
    let out = Command::new("python3")
        .env("PYTHONPATH", &yaml)
        .args(["-c", "import json, sys, yaml; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))"])
        .arg(file)
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "{}: {}", file.display(), String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn port_of(addr: &ListenAddr) -> u16 {
    match addr {
        ListenAddr::Tcp(a) => a.port(),
        ListenAddr::Unix(p) => panic!("a container listens on TCP, not unix:{}", p.display()),
    }
}

#[test]
fn the_kubernetes_manifests_agree_with_the_configuration_they_carry() {
    let manifests = root().join("examples/kubernetes/wasgi.yaml");
    let docs = yaml_documents(&manifests);
    let kind = |k: &str| docs.iter().find(|d| d["kind"] == k).unwrap_or_else(|| panic!("no {k} in {}", manifests.display()));
    let (config_map, deployment, service) = (kind("ConfigMap"), kind("Deployment"), kind("Service"));

    // The configuration, as wasgi reads it.
    let text = config_map["data"]["wasgi.toml"].as_str().expect("the ConfigMap carries wasgi.toml");
    let config = wasgi::config::from_text(Path::new("/etc/wasgi/wasgi.toml"), text).unwrap_or_else(|p| panic!("the ConfigMap's wasgi.toml: {p}"));
    let admin_port = port_of(config.admin.as_ref().expect("an admin listener for the probes"));
    let http_port = port_of(&config.listen[0].addr);

    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let named_port = |name: &str| -> u16 {
        let port = container["ports"].as_array().unwrap().iter().find(|p| p["name"] == name).unwrap_or_else(|| panic!("no port named {name}"));
        port["containerPort"].as_u64().unwrap() as u16
    };
    assert_eq!(named_port("admin"), admin_port, "the admin port is the admin listener's");
    assert_eq!(named_port("http"), http_port, "the http port is the [[listen]] address's");
    for (probe, path) in [("livenessProbe", "/live"), ("readinessProbe", "/ready"), ("startupProbe", "/live")] {
        assert_eq!(container[probe]["httpGet"]["path"], path, "{probe}");
        assert_eq!(container[probe]["httpGet"]["port"], "admin", "{probe} asks the admin listener");
    }
    // Termination: preStop, then shutdown_delay, then graceful_timeout.
    let pre_stop = container["lifecycle"]["preStop"]["exec"]["command"].as_array().unwrap();
    let pause: u64 = pre_stop.last().unwrap().as_str().unwrap().parse().unwrap();
    assert_eq!(pause, config.http.shutdown_delay.as_secs(), "the preStop pause is shutdown_delay");
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert!(grace > pause + config.http.shutdown_delay.as_secs() + config.graceful_timeout.as_secs(), "terminationGracePeriodSeconds {grace} is too short");
    // Non-root, read-only root, the cache on a volume where WASGI_CACHE_DIR points.
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(container["securityContext"]["allowPrivilegeEscalation"], false);
    let cache_dir = container["env"].as_array().unwrap().iter().find(|e| e["name"] == "WASGI_CACHE_DIR").unwrap()["value"].as_str().unwrap().to_owned();
    let mounts = container["volumeMounts"].as_array().unwrap();
    assert!(mounts.iter().any(|m| cache_dir.starts_with(m["mountPath"].as_str().unwrap()) && m["name"] == "cache"), "{cache_dir} is on the cache volume");
    assert!(mounts.iter().any(|m| m["mountPath"] == "/etc/wasgi" && m["name"] == "config"));
    let seed = &pod["initContainers"][0];
    assert_eq!(seed["volumeMounts"][0]["name"], "cache", "the init container seeds the cache volume");
    // The Service sends traffic to the listener, never to the admin port.
    let targets: Vec<&str> = service["spec"]["ports"].as_array().unwrap().iter().map(|p| p["targetPort"].as_str().unwrap()).collect();
    assert_eq!(targets, ["http"]);
    assert_eq!(service["spec"]["selector"], deployment["spec"]["selector"]["matchLabels"]);

    // The image's own configuration reads too, with the same ports.
    let image_config = root().join("examples/container/wasgi.toml");
    let image = wasgi::config::from_text(&image_config, &std::fs::read_to_string(&image_config).unwrap()).unwrap_or_else(|p| panic!("{p}"));
    assert_eq!((port_of(image.admin.as_ref().unwrap()), port_of(&image.listen[0].addr)), (admin_port, http_port));
}

#[test]
fn the_container_image_builds_and_serves_where_a_runtime_is() {
    let runtime = ["docker", "podman"].into_iter().find(|r| Command::new(r).arg("info").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success()));
    let Some(runtime) = runtime else {
        eprintln!("no container runtime answers here (docker info, podman info): the image was not built");
        return;
    };
    let tag = "wasgi-test:latest";
    let built = Command::new(runtime).args(["build", "-f", "examples/container/Containerfile", "-t", tag, "."]).current_dir(root()).status().unwrap();
    assert!(built.success(), "{runtime} build failed");
    let dir = TempDir::new("container");
    let name = format!("wasgi-test-{}", std::process::id());
    let run = Command::new(runtime)
        .args(["run", "-d", "--rm", "--name", &name, "--read-only", "--tmpfs", "/tmp", "-p", "127.0.0.1::8000", "-p", "127.0.0.1::9000", tag])
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let port = |inner: &str| {
        let out = Command::new(runtime).args(["port", &name, inner]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or_default().trim().to_owned()
    };
    let (http, admin) = (port("8000"), port("9000"));
    let deadline = Instant::now() + Duration::from_secs(120);
    let ready = loop {
        let r = std::panic::catch_unwind(|| wasgi_tests::http::get(&admin, "/ready").status).ok();
        if r == Some(200) || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let page = std::panic::catch_unwind(|| wasgi_tests::http::get(&http, "/").text());
    let _ = Command::new(runtime).args(["stop", &name]).status();
    drop(dir);
    assert_eq!(ready, Some(200), "the container's /ready");
    assert!(page.unwrap().contains("Hello"), "the example app answers from the container");
}
