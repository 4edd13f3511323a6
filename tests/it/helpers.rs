//! Shared fixtures: a test bed per test on either API server ([`Bed`], [`Plane`]), the real
//! `kubectl` pointed at it, and a kube-rs client for it. [`TestCluster`] is the embedded
//! server reached in-process, for the tests that inject faults into it or read its store.

use std::path::PathBuf;
use std::process::Output;

use coldstart_sim::seed::{self, Seed};
use coldstart_sim::{self as sim, Running, Sim, SimConfig};

/// Which API server a scenario runs against. The end-to-end suite runs each scenario on
/// both (issue 13): a difference in outcome is a bug in one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plane {
    /// coldstart's own in-process API server (`coldstart_sim`).
    Embedded,
    /// etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok, with the
    /// simulated cloud's controllers beside them (`coldstart_sim::control_plane`).
    Kubernetes,
}

/// A scenario written once as `async fn scenario(plane: Plane)`, as a module named for
/// what it shows holding two tests, one per [`Plane`]: `NAME::on_the_embedded_server` and
/// `NAME::on_kubernetes` (.config/nextest.toml limits how many of the latter run at once).
macro_rules! on_both_planes {
    ($(#[$meta:meta])* $name:ident = $scenario:ident) => {
        $(#[$meta])*
        mod $name {
            #[tokio::test(flavor = "multi_thread")]
            async fn on_the_embedded_server() {
                super::$scenario($crate::helpers::Plane::Embedded).await;
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn on_kubernetes() {
                super::$scenario($crate::helpers::Plane::Kubernetes).await;
            }
        }
    };
}
pub(crate) use on_both_planes;

/// The server behind a [`Bed`].
enum Server {
    Embedded(Running),
    Kubernetes(Box<coldstart_sim::control_plane::launch::Launched>),
}

/// A cluster on either [`Plane`], reached only the way a user reaches one: the Kubernetes API
/// (a kube-rs client, `kubectl`) and the admin endpoint the kubeconfig names (`GET
/// /sim/v1/cloud`, `POST /sim/v1/teardown`), so every step means the same thing on both.
pub struct Bed {
    server: Server,
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    client: kube::Client,
}

impl Bed {
    /// Start a bed with `seed` applied. The real control plane's binaries missing fails the
    /// test: a claim about real Kubernetes that was not checked against it must not pass.
    pub async fn start(plane: Plane, seed: Seed) -> Self {
        let (server, kubeconfig_yaml) = match plane {
            Plane::Embedded => {
                let sim = Sim::new(SimConfig::default());
                seed::load(&sim, seed);
                let running = sim::start(sim, "127.0.0.1:0".parse().expect("addr"))
                    .await
                    .expect("the embedded server starts");
                let yaml = running.kubeconfig();
                (Server::Embedded(running), yaml)
            }
            Plane::Kubernetes => {
                use coldstart_sim::control_plane::{self, launch::Launched};
                let bin = control_plane::locate_binaries().unwrap_or_else(|e| panic!("{e}"));
                let launched = Launched::start(
                    // The embedded server's default cluster name, so kubeconfigs name the same cluster.
                    control_plane::Config::new("sim", bin),
                    std::sync::Arc::new(coldstart_sim::cloud::Cloud::default()),
                    seed,
                )
                .await
                .unwrap_or_else(|e| panic!("the Kubernetes control plane starts: {e}"));
                let yaml = launched.kubeconfig().await;
                (Server::Kubernetes(Box::new(launched)), yaml)
            }
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(&kubeconfig, kubeconfig_yaml).expect("write kubeconfig");
        let client = coldstart::k8s::connect::connect(Some(&kubeconfig), None)
            .await
            .expect("client");
        Bed {
            server,
            dir,
            kubeconfig,
            client,
        }
    }

    pub async fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// The API for `apiVersion`/`kind`, waiting (up to 30 s) for a kind a CRD just
    /// defined to be served: kube-apiserver serves it once the CRD is established.
    async fn api_for(
        &self,
        api_version: &str,
        kind: &str,
        ns: Option<&str>,
    ) -> kube::Api<kube::api::DynamicObject> {
        self.api_for_client(&self.client, api_version, kind, ns)
            .await
    }

    async fn api_for_client(
        &self,
        client: &kube::Client,
        api_version: &str,
        kind: &str,
        ns: Option<&str>,
    ) -> kube::Api<kube::api::DynamicObject> {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let gvk = kube::api::GroupVersionKind::gvk(group, version, kind);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let (ar, caps) = loop {
            match kube::discovery::pinned_kind(&self.client, &gvk).await {
                Ok(found) => break found,
                Err(e) => assert!(
                    std::time::Instant::now() < deadline,
                    "{api_version} {kind} is not served: {e}"
                ),
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        };
        match (caps.scope, ns) {
            (kube::discovery::Scope::Namespaced, Some(ns)) => {
                kube::Api::namespaced_with(client.clone(), ns, &ar)
            }
            (kube::discovery::Scope::Namespaced, None) => {
                kube::Api::default_namespaced_with(client.clone(), &ar)
            }
            (kube::discovery::Scope::Cluster, _) => kube::Api::all_with(client.clone(), &ar),
        }
    }

    /// Create an object as another user (the admin impersonating `user` in `system:masters`,
    /// which both servers honour: RBAC allows it everything, admission still judges it):
    /// the API server's refusal message if it refuses.
    pub async fn create_as(
        &self,
        obj: serde_json::Value,
        user: &str,
    ) -> Result<serde_json::Value, String> {
        let kubeconfig =
            kube::config::Kubeconfig::read_from(&self.kubeconfig).expect("the bed's kubeconfig");
        let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .expect("config");
        config.auth_info.impersonate = Some(user.to_owned());
        config.auth_info.impersonate_groups = Some(vec!["system:masters".to_owned()]);
        let client = kube::Client::try_from(config).expect("client");
        let av = obj["apiVersion"].as_str().unwrap_or_default().to_owned();
        let kind = obj["kind"].as_str().unwrap_or_default().to_owned();
        let ns = obj["metadata"]["namespace"].as_str().map(str::to_owned);
        let api = self
            .api_for_client(&client, &av, &kind, ns.as_deref())
            .await;
        let o: kube::api::DynamicObject = serde_json::from_value(obj).expect("an object");
        match api.create(&Default::default(), &o).await {
            Ok(created) => Ok(serde_json::to_value(created).expect("json")),
            Err(kube::Error::Api(s)) => Err(s.message),
            Err(e) => panic!("the API server did not answer: {e}"),
        }
    }

    /// Create an object as the cluster admin, through the API.
    pub async fn create(&self, obj: serde_json::Value) -> serde_json::Value {
        let av = obj["apiVersion"].as_str().unwrap_or_default().to_owned();
        let kind = obj["kind"].as_str().unwrap_or_default().to_owned();
        let ns = obj["metadata"]["namespace"].as_str().map(str::to_owned);
        let api = self.api_for(&av, &kind, ns.as_deref()).await;
        let o: kube::api::DynamicObject = serde_json::from_value(obj).expect("an object");
        let created = api
            .create(&Default::default(), &o)
            .await
            .unwrap_or_else(|e| panic!("create {kind} failed: {e}"));
        serde_json::to_value(created).expect("json")
    }

    /// The resource `group`/`plural` as served (its preferred version), if it is.
    async fn served(&self, group: &str, plural: &str) -> Option<(kube::api::ApiResource, bool)> {
        let g = kube::discovery::group(&self.client, group).await.ok()?;
        g.recommended_resources()
            .into_iter()
            .find(|(ar, _)| ar.plural == plural)
            .map(|(ar, caps)| (ar, caps.scope == kube::discovery::Scope::Namespaced))
    }

    /// Read an object through the API (`group`, `plural`, namespace or "", name); `None` if
    /// it or its kind does not exist.
    pub async fn get(
        &self,
        group: &str,
        plural: &str,
        ns: &str,
        name: &str,
    ) -> Option<serde_json::Value> {
        let (ar, namespaced) = self.served(group, plural).await?;
        let api: kube::Api<kube::api::DynamicObject> = if namespaced {
            kube::Api::namespaced_with(self.client.clone(), ns, &ar)
        } else {
            kube::Api::all_with(self.client.clone(), &ar)
        };
        let o = api.get_opt(name).await.expect("the API answers")?;
        Some(serde_json::to_value(o).expect("json"))
    }

    /// Every object of `group`/`plural` in every namespace, through the API; empty if the
    /// kind is not served.
    pub async fn list(&self, group: &str, plural: &str) -> Vec<serde_json::Value> {
        let Some((ar, _)) = self.served(group, plural).await else {
            return Vec::new();
        };
        let api: kube::Api<kube::api::DynamicObject> =
            kube::Api::all_with(self.client.clone(), &ar);
        api.list(&Default::default())
            .await
            .expect("the API answers")
            .items
            .into_iter()
            .map(|o| serde_json::to_value(o).expect("json"))
            .collect()
    }

    /// Every served resource of a group other than Kubernetes' own (a dot in its name, not
    /// `*.k8s.io`, or COSI's `objectstorage.k8s.io`): the kind and the plural.
    pub async fn custom_kinds(&self) -> Vec<(String, String, String)> {
        let discovery = kube::Discovery::new(self.client.clone())
            .run()
            .await
            .expect("discovery");
        let mut out = Vec::new();
        for g in discovery.groups() {
            let name = g.name();
            if !(name.contains('.') && !name.ends_with(".k8s.io") || name == "objectstorage.k8s.io")
            {
                continue;
            }
            for (ar, _) in g.recommended_resources() {
                out.push((ar.group.clone(), ar.plural.clone(), ar.kind.clone()));
            }
        }
        out
    }

    /// The simulated cloud, as `GET /sim/v1/cloud` shows it (the kubeconfig names where).
    pub async fn cloud(&self) -> coldstart_sim::cloud::CloudState {
        let req = http::Request::get("/sim/v1/cloud")
            .body(Vec::new())
            .expect("request");
        self.client.request(req).await.expect("GET /sim/v1/cloud")
    }

    /// Add what the cloud account already holds (`POST /sim/v1/cloud`).
    pub async fn add_to_cloud(&self, existing: &coldstart_sim::cloud::Existing) {
        let req = http::Request::post("/sim/v1/cloud")
            .header("Content-Type", "application/json")
            .body(serde_json::to_vec(existing).expect("json"))
            .expect("request");
        self.client
            .request_text(req)
            .await
            .expect("POST /sim/v1/cloud");
    }

    /// Lose a cloud bucket from outside the cluster (`DELETE /sim/v1/cloud/buckets/NAME`).
    pub async fn delete_bucket(&self, name: &str) {
        let req = http::Request::delete(format!("/sim/v1/cloud/buckets/{name}"))
            .body(Vec::new())
            .expect("request");
        self.client
            .request_text(req)
            .await
            .unwrap_or_else(|e| panic!("DELETE bucket {name}: {e}"));
    }

    /// Lose a cloud disk from outside the cluster (`DELETE /sim/v1/cloud/disks/ID`).
    pub async fn delete_disk(&self, id: &str) {
        let req = http::Request::delete(format!("/sim/v1/cloud/disks/{id}"))
            .body(Vec::new())
            .expect("request");
        self.client
            .request_text(req)
            .await
            .unwrap_or_else(|e| panic!("DELETE disk {id}: {e}"));
    }

    /// Attach a cloud disk to an instance outside the cluster
    /// (`POST /sim/v1/cloud/disks/ID/attach`).
    pub async fn attach_disk(&self, id: &str, instance: &str) {
        let req = http::Request::post(format!("/sim/v1/cloud/disks/{id}/attach"))
            .header("Content-Type", "application/json")
            .body(serde_json::to_vec(&serde_json::json!({"instance": instance})).expect("json"))
            .expect("request");
        self.client
            .request_text(req)
            .await
            .unwrap_or_else(|e| panic!("attach disk {id}: {e}"));
    }

    /// Every object a client created in the cluster, as `resource namespace/name`: each
    /// listable resource outside the control plane's own namespaces, without what the
    /// control plane keeps writing by itself (Events, Leases, Nodes). Two equal answers
    /// mean nobody created or deleted anything in between, on either server.
    pub async fn user_objects(&self) -> std::collections::BTreeSet<String> {
        const OWN_NAMESPACES: [&str; 3] = ["kube-system", "kube-public", "kube-node-lease"];
        const OWN_KINDS: [&str; 4] = ["Event", "Lease", "Node", "ComponentStatus"];
        let client = self.client().await;
        let discovery = kube::Discovery::new(client.clone())
            .run()
            .await
            .expect("discovery");
        let mut out = std::collections::BTreeSet::new();
        for group in discovery.groups() {
            for (ar, caps) in group.recommended_resources() {
                if !caps.supports_operation(kube::discovery::verbs::LIST)
                    || OWN_KINDS.contains(&ar.kind.as_str())
                {
                    continue;
                }
                let api: kube::Api<kube::api::DynamicObject> =
                    kube::Api::all_with(client.clone(), &ar);
                let list = api
                    .list(&Default::default())
                    .await
                    .unwrap_or_else(|e| panic!("list {}: {e}", ar.plural));
                for o in list.items {
                    let ns = o.metadata.namespace.clone().unwrap_or_default();
                    if OWN_NAMESPACES.contains(&ns.as_str()) {
                        continue;
                    }
                    out.insert(format!(
                        "{}.{} {ns}/{}",
                        ar.plural,
                        ar.group,
                        o.metadata.name.unwrap_or_default()
                    ));
                }
            }
        }
        out
    }

    /// Delete the cluster the way a cloud does (`POST /sim/v1/teardown`): the same address
    /// answers an empty cluster; what the cloud keeps survives.
    pub async fn teardown(&self) {
        let req = http::Request::post("/sim/v1/teardown")
            .body(Vec::new())
            .expect("request");
        self.client
            .request_text(req)
            .await
            .expect("POST /sim/v1/teardown");
    }

    pub async fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_stdin(args, None).await
    }

    pub async fn kubectl_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        kubectl(&self.kubeconfig, self.dir.path(), args, stdin).await
    }

    /// kubectl that must succeed; returns stdout.
    pub async fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args).await;
        assert_ok(&out, args);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub async fn apply(&self, yaml: &str, extra: &[&str]) -> String {
        let mut args = vec!["apply", "-f", "-"];
        args.extend_from_slice(extra);
        let out = self.kubectl_stdin(&args, Some(yaml)).await;
        assert_ok(&out, &args);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Poll `cond` every 500 ms until it holds; panic with `what` after 90 s.
    pub async fn wait_for(&self, what: &str, mut cond: impl AsyncFnMut(&Bed) -> bool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
        while !cond(self).await {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting until {what}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    }

    /// `kubectl get -o json ARGS`, decoded.
    pub async fn get_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["get", "-o", "json"];
        all.extend_from_slice(args);
        serde_json::from_str(&self.kubectl_ok(&all).await).expect("json")
    }

    /// Run the coldstart CLI against this bed with a file store in `store`, sealing with
    /// [`CLI_KEY`].
    pub async fn coldstart(&self, store: &std::path::Path, args: &[&str]) -> Output {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_coldstart"))
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["--store", &format!("file://{}", store.display())])
            .args(args)
            .env("COLDSTART_ENCRYPTION_KEY", CLI_KEY)
            .output()
            .await
            .expect("coldstart runs")
    }

    /// `coldstart --json ARGS` against this bed, which must succeed: its JSON answer.
    pub async fn coldstart_json(&self, args: &[&str]) -> serde_json::Value {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_coldstart"))
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--json")
            .args(args)
            .output()
            .await
            .expect("coldstart runs");
        serde_json::from_str(&cli_ok(&out, &format!("coldstart {}", args.join(" ")))).expect("json")
    }

    pub async fn stop(self) {
        match self.server {
            Server::Embedded(r) => r.stop().await,
            Server::Kubernetes(l) => l.shutdown().await,
        }
    }
}

/// Run the real kubectl with `kubeconfig` and its own discovery cache under `dir`, so tests
/// never see each other's resources.
async fn kubectl(
    kubeconfig: &std::path::Path,
    dir: &std::path::Path,
    args: &[&str],
    stdin: Option<&str>,
) -> Output {
    let mut all: Vec<String> = vec![
        format!("--kubeconfig={}", kubeconfig.display()),
        format!("--cache-dir={}", dir.join("cache").display()),
    ];
    all.extend(args.iter().map(|s| (*s).to_owned()));
    let input = stdin.map(str::to_owned);
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut cmd = std::process::Command::new("kubectl");
        cmd.args(&all)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .stdin(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("kubectl is installed (see README)");
        if let Some(input) = input {
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(input.as_bytes())
                .expect("write stdin");
        } else {
            drop(child.stdin.take());
        }
        child.wait_with_output().expect("kubectl runs")
    })
    .await
    .expect("join")
}

/// The embedded server reached in-process ([`TestCluster::sim`]): for tests of the embedded
/// server itself (fault injection, its store); scenarios that mean the same on both API
/// servers use [`Bed`].
pub struct TestCluster {
    pub running: Running,
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
}

impl TestCluster {
    pub async fn start() -> Self {
        Self::start_with(Seed::Empty).await
    }

    pub async fn start_with(seed: Seed) -> Self {
        let sim = Sim::new(SimConfig::default());
        seed::load(&sim, seed);
        let running = sim::start(sim, "127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("simulated cluster starts");
        let dir = tempfile::tempdir().expect("tempdir");
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(&kubeconfig, running.kubeconfig()).expect("write kubeconfig");
        TestCluster {
            running,
            dir,
            kubeconfig,
        }
    }

    pub fn sim(&self) -> &Sim {
        &self.running.sim
    }

    /// Create an object as the cluster admin, in-process.
    pub fn create(&self, obj: serde_json::Value) -> serde_json::Value {
        self.create_as(obj, &coldstart_sim::Actor::admin())
            .unwrap_or_else(|e| panic!("create failed: {e}"))
    }

    pub fn create_as(
        &self,
        obj: serde_json::Value,
        actor: &coldstart_sim::Actor,
    ) -> Result<serde_json::Value, coldstart_sim::status::ApiError> {
        let sim = self.sim();
        let av = obj["apiVersion"].as_str().unwrap_or_default().to_owned();
        let kind = obj["kind"].as_str().unwrap_or_default().to_owned();
        let def = sim
            .registry()
            .by_kind(&av, &kind)
            .cloned()
            .unwrap_or_else(|| panic!("{av} {kind} is not served"));
        let ns = obj["metadata"]["namespace"].as_str().map(str::to_owned);
        sim.create(&def, ns.as_deref(), obj, actor, Default::default())
            .map(|s| s.value())
    }

    /// Read an object in-process (`group`, `plural`, namespace or "", name).
    pub fn get(
        &self,
        group: &str,
        plural: &str,
        ns: &str,
        name: &str,
    ) -> Option<serde_json::Value> {
        let def = self.sim().def(group, plural)?;
        let ns = def.namespaced.then_some(ns);
        self.sim().get(&def, ns, name).ok().map(|s| s.value())
    }

    pub fn cloud(&self) -> coldstart_sim::cloud::CloudState {
        self.sim().cloud.snapshot()
    }

    pub fn url(&self) -> String {
        self.running.url()
    }

    /// Run the real kubectl against this cluster (its own discovery cache, so tests never
    /// see each other's resources).
    pub async fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_stdin(args, None).await
    }

    pub async fn kubectl_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        kubectl(&self.kubeconfig, self.dir.path(), args, stdin).await
    }

    /// kubectl that must succeed; returns stdout.
    pub async fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args).await;
        assert_ok(&out, args);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub async fn apply(&self, yaml: &str, extra: &[&str]) -> String {
        let mut args = vec!["apply", "-f", "-"];
        args.extend_from_slice(extra);
        let out = self.kubectl_stdin(&args, Some(yaml)).await;
        assert_ok(&out, &args);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub async fn client(&self) -> kube::Client {
        coldstart::k8s::connect::connect(Some(&self.kubeconfig), None)
            .await
            .expect("client")
    }

    /// Delete the cluster the way a cloud does (`POST /sim/v1/teardown`): the same address
    /// answers an empty cluster; what the cloud keeps survives.
    pub async fn teardown(&self) {
        let (code, _) = http(
            "POST",
            &format!("{}/sim/v1/teardown", self.url()),
            None,
            None,
        )
        .await;
        assert_eq!(code, 200, "teardown");
    }

    pub async fn stop(self) {
        self.running.stop().await;
    }
}

/// The encryption key CLI runs against a [`Bed`] seal snapshots with.
pub const CLI_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// A CLI run's stdout, which must have succeeded (`what` names it in the failure).
pub fn cli_ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}): {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn assert_ok(out: &Output, args: &[&str]) {
    assert!(
        out.status.success(),
        "kubectl {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
}

/// A raw API call; returns the status code and the JSON body (Null if not JSON).
pub async fn http(
    method: &str,
    url: &str,
    content_type: Option<&str>,
    body: Option<String>,
) -> (u16, serde_json::Value) {
    let client = reqwest::Client::new();
    let mut req = client.request(
        reqwest::Method::from_bytes(method.as_bytes()).expect("method"),
        url,
    );
    if let Some(ct) = content_type {
        req = req.header("Content-Type", ct);
    }
    if let Some(b) = body {
        req = req.body(b);
    }
    let resp = req.send().await.expect("request is sent");
    let code = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    (
        code,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    )
}

/// Poll `cond` every 50 ms until it holds; panic with `what` after 10 s.
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// moto's S3 server on a free loopback port, killed on drop. Panics (fails the test) if
/// moto is not installed: `tests/run` installs it.
pub struct Moto {
    child: std::process::Child,
    pub endpoint: String,
}

impl Moto {
    pub async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = std::process::Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let mut moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        for _ in 0..200 {
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!(
                    "moto's server exited ({status}); install it with `pip install \"moto[server]\"` (tests/run does)"
                );
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return moto;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("moto's server did not start listening on port {port} within 20 s");
    }

    /// Create a bucket (moto accepts unsigned requests).
    pub async fn bucket(&self, name: &str) {
        let resp = reqwest::Client::new()
            .put(format!("{}/{name}", self.endpoint))
            .send()
            .await
            .expect("moto answers");
        assert!(
            resp.status().is_success(),
            "create bucket: {}",
            resp.status()
        );
    }

    /// Environment for a process using this server as its S3.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("COLDSTART_S3_ENDPOINT", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
            ("AWS_REGION", "us-east-1".to_owned()),
        ]
    }

    /// A store on this server, built directly (tests cannot set process environment).
    pub fn store(&self, bucket: &str, prefix: &str) -> coldstart::store::Store {
        coldstart::k8s::connect::init_tls();
        let s3 = object_store::aws::AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .with_bucket_name(bucket)
            .with_region("us-east-1")
            .with_access_key_id("testing")
            .with_secret_access_key("testing")
            .build()
            .expect("s3 store");
        coldstart::store::Store::new(
            std::sync::Arc::new(s3),
            prefix,
            &format!("s3://{bucket}/{prefix}"),
        )
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Poll an async condition every 100 ms until it holds; panic with `what` after 120 s (the
/// real control plane's controllers, sharing a loaded machine, take tens of seconds to
/// settle the platform seed).
pub async fn wait_until_async<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !cond().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

impl Moto {
    /// An AWS SDK configuration for this server (moto accepts any credentials), built
    /// explicitly so tests never touch the process environment.
    pub fn sdk_config(&self, region: &str) -> aws_config::SdkConfig {
        coldstart::k8s::connect::init_tls();
        aws_config::SdkConfig::builder()
            .region(aws_config::Region::new(region.to_owned()))
            .endpoint_url(&self.endpoint)
            .credentials_provider(aws_sdk_s3::config::SharedCredentialsProvider::new(
                aws_sdk_s3::config::Credentials::new("testing", "testing", None, None, "moto"),
            ))
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build()
    }

    pub fn ec2(&self, region: &str) -> aws_sdk_ec2::Client {
        aws_sdk_ec2::Client::new(&self.sdk_config(region))
    }

    /// S3 with path-style addressing, as moto's single endpoint needs.
    pub fn s3(&self, region: &str) -> aws_sdk_s3::Client {
        let conf = aws_sdk_s3::config::Builder::from(&self.sdk_config(region))
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    pub fn route53(&self) -> aws_sdk_route53::Client {
        aws_sdk_route53::Client::new(&self.sdk_config("us-east-1"))
    }
}

/// A snapshot store backend that reads but refuses every write, the way a bucket does to
/// credentials without `s3:PutObject`.
#[derive(Debug, Default)]
pub struct ReadOnlyStore(pub object_store::memory::InMemory);

impl std::fmt::Display for ReadOnlyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReadOnlyStore")
    }
}

fn denied(path: &object_store::path::Path) -> object_store::Error {
    object_store::Error::PermissionDenied {
        path: path.to_string(),
        source: "403 Forbidden: read-only credentials".into(),
    }
}

#[async_trait::async_trait]
impl object_store::ObjectStore for ReadOnlyStore {
    async fn put_opts(
        &self,
        location: &object_store::path::Path,
        _payload: object_store::PutPayload,
        _opts: object_store::PutOptions,
    ) -> object_store::Result<object_store::PutResult> {
        Err(denied(location))
    }

    async fn put_multipart_opts(
        &self,
        location: &object_store::path::Path,
        _opts: object_store::PutMultipartOptions,
    ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
        Err(denied(location))
    }

    async fn get_opts(
        &self,
        location: &object_store::path::Path,
        options: object_store::GetOptions,
    ) -> object_store::Result<object_store::GetResult> {
        self.0.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: futures::stream::BoxStream<
            'static,
            object_store::Result<object_store::path::Path>,
        >,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::path::Path>> {
        use futures::StreamExt as _;
        locations.map(|l| l.and_then(|p| Err(denied(&p)))).boxed()
    }

    fn list(
        &self,
        prefix: Option<&object_store::path::Path>,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
        self.0.list(prefix)
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&object_store::path::Path>,
    ) -> object_store::Result<object_store::ListResult> {
        self.0.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        _from: &object_store::path::Path,
        to: &object_store::path::Path,
        _options: object_store::CopyOptions,
    ) -> object_store::Result<()> {
        Err(denied(to))
    }
}

/// The encryption keys the tests seal snapshots with (each test has its own store; a test
/// about a wrong key makes another).
pub fn keys() -> coldstart::snapshot::crypto::Keys {
    coldstart::snapshot::crypto::Keys::from_master(&[7u8; 32])
}

/// A fresh progress record for one run.
pub fn progress() -> std::sync::Arc<std::sync::Mutex<coldstart::progress::Progress>> {
    std::sync::Arc::new(std::sync::Mutex::new(
        coldstart::progress::Progress::default(),
    ))
}

/// Snapshot options recording the cluster as `cluster`.
pub fn snapshot_opts(cluster: &str) -> coldstart::snapshot::write::Options {
    coldstart::snapshot::write::Options {
        cluster_name: cluster.into(),
        ..Default::default()
    }
}

/// A restore on the simulated platform: short timeouts, and the simulated cloud checked
/// before the first write and counted after (it knows which disks still exist).
pub fn sim_restore_opts() -> coldstart::restore::RestoreOptions {
    coldstart::restore::RestoreOptions {
        verify_timeout: std::time::Duration::from_secs(15),
        operator_timeout: std::time::Duration::from_secs(15),
        cloud: coldstart::cloud::CloudChoice::Sim,
        ..Default::default()
    }
}

/// A stop of `cluster` on the simulated platform, checked against the simulated cloud.
pub fn sim_stop_opts(cluster: &str) -> coldstart::lifecycle::StopOptions {
    coldstart::lifecycle::StopOptions {
        snapshot: snapshot_opts(cluster),
        quiesce_timeout: std::time::Duration::from_secs(20),
        cloud: coldstart::cloud::CloudChoice::Sim,
        ..Default::default()
    }
}

/// A start from the stop marker on the simulated platform ([`sim_restore_opts`]).
pub fn sim_start_opts() -> coldstart::lifecycle::StartOptions {
    coldstart::lifecycle::StartOptions {
        restore: sim_restore_opts(),
        snapshot: None,
        ready_timeout: std::time::Duration::from_secs(20),
        consent: Default::default(),
    }
}
