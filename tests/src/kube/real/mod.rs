//! A real Kubernetes control plane for the tests, started the way controller-runtime's envtest
//! starts one: etcd, kube-apiserver and, when its program is found, kube-controller-manager,
//! on loopback ports with certificates made at start. One per test binary, started by the
//! first test that asks and shared by all of them; each test works in a namespace of its own.
//!
//! The API server authorizes as a cluster does (`Node,RBAC`, with the `NodeRestriction`
//! admission plugin), so the actors standing in for the parts this control plane lacks act
//! with those parts' own permissions: the scheduler actor as `system:kube-scheduler`, the
//! kubelet actor as node `baton-test-node` (it serves its pods' logs, which the API server
//! reads from it over TLS as from any kubelet), the helm-controller actor as Flux's
//! ServiceAccount. Tests and Baton's processes use the admin's kubeconfig.
//!
//! The processes are children of a thread that lives as long as the test binary, and carry
//! the parent-death signal: they end with the binary, even when it is killed.

mod binaries;
mod pki;

pub use binaries::{program, required};
pub use pki::Pem;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use binaries::Binaries;
use pki::Pki;

/// How long a control plane may take to start: an API server starts in about 5 s here,
/// longer on a loaded machine.
const START_WITHIN: Duration = Duration::from_secs(120);

/// A running control plane, shared by a test binary's tests.
pub struct Cluster {
    /// `https://127.0.0.1:<port>`.
    pub url: String,
    /// An admin kubeconfig (`system:masters`), for tests and Baton's processes.
    pub kubeconfig: PathBuf,
    /// The kubelet actor's serving certificate, which the API server trusts.
    pub kubelet_tls: Pem,
    /// Whether kube-controller-manager runs (namespaces get a `default` ServiceAccount).
    pub controller_manager: bool,
    /// The runtime the shared actors run on; it lives as long as the test binary.
    pub runtime: tokio::runtime::Handle,
}

static SHARED: OnceLock<Result<Cluster, String>> = OnceLock::new();

impl Cluster {
    /// The test binary's control plane, started on first use.
    pub fn shared() -> anyhow::Result<&'static Cluster> {
        SHARED
            .get_or_init(|| start().map_err(|e| format!("{e:#}")))
            .as_ref()
            .map_err(|e| anyhow::anyhow!("starting the tests' Kubernetes control plane: {e}"))
    }

    /// A client with the admin's rights.
    pub async fn admin(&self) -> anyhow::Result<kube::Client> {
        self.client_as(None).await
    }

    /// A client acting as `user` in `groups`: the admin impersonates it, so the API server
    /// allows it exactly what that identity may do.
    pub async fn client_as_user(
        &self,
        user: &str,
        groups: &[&str],
    ) -> anyhow::Result<kube::Client> {
        self.client_as(Some((user, groups))).await
    }

    async fn client_as(&self, identity: Option<(&str, &[&str])>) -> anyhow::Result<kube::Client> {
        let mut config = kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(&self.kubeconfig)?,
            &kube::config::KubeConfigOptions::default(),
        )
        .await?;
        if let Some((user, groups)) = identity {
            config.auth_info.impersonate = Some(user.to_owned());
            config.auth_info.impersonate_groups =
                Some(groups.iter().map(|g| g.to_string()).collect());
        }
        Ok(kube::Client::try_from(config)?)
    }
}

/// Starts the control plane on a thread of its own that then keeps it (and the actors'
/// runtime) for the rest of the test binary's life.
fn start() -> anyhow::Result<Cluster> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let binaries = Binaries::find()?;
    let dir = state_dir()?;
    let pki = Pki::create(&dir)?;
    let token = random_hex();
    write_private(
        &dir.join("tokens.csv"),
        &format!("{token},baton-test-admin,baton-test-admin,\"system:masters\"\n"),
    )?;
    let (sender, receiver) = std::sync::mpsc::channel();
    let thread_dir = dir.clone();
    std::thread::Builder::new()
        .name("kube-control-plane".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => return drop(sender.send(Err(anyhow::Error::new(e)))),
            };
            match runtime.block_on(launch(&binaries, &thread_dir, &pki, &token)) {
                Err(e) => drop(sender.send(Err(e))),
                Ok((cluster, _children)) => {
                    let _ = sender.send(Ok(cluster));
                    // The children's parent-death signal is tied to this thread, and the
                    // actors run on its runtime: it keeps both until the binary exits.
                    loop {
                        std::thread::park();
                    }
                }
            }
        })?;
    let cluster = receiver
        .recv()
        .context("the control plane's thread ended")??;
    Ok(cluster)
}

/// A folder for this binary's control plane under the temporary directory; folders left by
/// binaries that are gone are removed first.
fn state_dir() -> anyhow::Result<PathBuf> {
    let base = std::env::temp_dir();
    for entry in std::fs::read_dir(&base)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("baton-kube-")
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok();
        if !alive {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    let dir = base.join(format!("baton-kube-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

async fn launch(
    binaries: &Binaries,
    dir: &Path,
    pki: &Pki,
    token: &str,
) -> anyhow::Result<(Cluster, Vec<Child>)> {
    let mut children = Vec::new();
    let (etcd_port, etcd_peer_port) = (crate::free_port(), crate::free_port());
    let etcd_url = format!("http://127.0.0.1:{etcd_port}");
    let peer_url = format!("http://127.0.0.1:{etcd_peer_port}");
    let mut etcd = Command::new(&binaries.etcd);
    etcd.arg("--name=baton-test")
        .arg(format!("--data-dir={}", dir.join("etcd").display()))
        .arg(format!("--listen-client-urls={etcd_url}"))
        .arg(format!("--advertise-client-urls={etcd_url}"))
        .arg(format!("--listen-peer-urls={peer_url}"))
        .arg(format!("--initial-advertise-peer-urls={peer_url}"))
        .arg(format!("--initial-cluster=baton-test={peer_url}"))
        // Tests only: nothing here must survive a power cut.
        .arg("--unsafe-no-fsync")
        .arg("--log-level=warn");
    children.push(spawn(etcd, &dir.join("etcd.log"))?);
    // Bounded requests: one that hangs must not outlast the start's own limit.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    wait_ready(&mut children[0], &dir.join("etcd.log"), || {
        let request = http.get(format!("{etcd_url}/health"));
        async move {
            let response = request.send().await.ok()?;
            let text = response.text().await.ok()?;
            text.contains("\"health\":\"true\"").then_some(())
        }
    })
    .await?;

    let controller_manager = binaries.kube_controller_manager.is_some();
    // Chosen only now, right before the server binds it, so that nothing started meanwhile
    // (etcd) takes it.
    let api_port = crate::free_port();
    let mut apiserver = Command::new(&binaries.kube_apiserver);
    apiserver
        .arg(format!("--etcd-servers={etcd_url}"))
        .arg("--bind-address=127.0.0.1")
        .arg("--advertise-address=127.0.0.1")
        .arg(format!("--secure-port={api_port}"))
        .arg(format!("--tls-cert-file={}", pki.apiserver_cert.display()))
        .arg(format!(
            "--tls-private-key-file={}",
            pki.apiserver_key.display()
        ))
        .arg(format!("--client-ca-file={}", pki.ca.display()))
        .arg(format!(
            "--token-auth-file={}",
            dir.join("tokens.csv").display()
        ))
        .arg("--anonymous-auth=false")
        .arg("--authorization-mode=Node,RBAC")
        // As kubeadm sets it: a node's IP first (the kubelet actor's host name resolves nowhere).
        .arg("--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname")
        .arg(format!(
            "--kubelet-certificate-authority={}",
            pki.ca.display()
        ))
        .arg("--service-account-issuer=https://kubernetes.default.svc.cluster.local")
        .arg(format!(
            "--service-account-key-file={}",
            pki.service_account_public.display()
        ))
        .arg(format!(
            "--service-account-signing-key-file={}",
            pki.service_account_key.display()
        ))
        .arg("--service-cluster-ip-range=10.0.0.0/24")
        .arg("--endpoint-reconciler-type=none")
        .arg("--allow-privileged=true")
        .arg("--profiling=false")
        .arg("--v=1");
    if controller_manager {
        apiserver.arg("--enable-admission-plugins=NodeRestriction");
    } else {
        // Nobody would make the `default` ServiceAccount that this plugin requires of a pod.
        apiserver
            .arg("--enable-admission-plugins=NodeRestriction")
            .arg("--disable-admission-plugins=ServiceAccount");
    }
    let apiserver_log = dir.join("kube-apiserver.log");
    children.push(spawn(apiserver, &apiserver_log)?);
    let url = format!("https://127.0.0.1:{api_port}");
    let ca = reqwest::Certificate::from_pem(pki.ca_pem.as_bytes())?;
    let https = reqwest::Client::builder()
        .add_root_certificate(ca)
        .timeout(Duration::from_secs(5))
        .build()?;
    wait_ready(&mut children[1], &apiserver_log, || {
        let request = https.get(format!("{url}/readyz")).bearer_auth(token);
        async move {
            let response = request.send().await.ok()?;
            response.status().is_success().then_some(())
        }
    })
    .await?;

    let kubeconfig = dir.join("kubeconfig");
    write_private(&kubeconfig, &kubeconfig_text(&url, &pki.ca_pem, token))?;
    if let Some(program) = &binaries.kube_controller_manager {
        let mut kcm = Command::new(program);
        kcm.arg(format!("--kubeconfig={}", kubeconfig.display()))
            // No serving endpoint: nothing here reads its health or metrics.
            .arg("--secure-port=0")
            .arg("--leader-elect=false")
            // What a namespace needs of a cluster: its `default` ServiceAccount, its deletion,
            // and the collection of objects whose owner is gone; and ReplicaSets' pods, which
            // Cells' experiment steps run (the kubelet actor runs them).
            .arg("--controllers=serviceaccount,namespace,garbagecollector,replicaset")
            .arg("--v=1");
        let log = dir.join("kube-controller-manager.log");
        children.push(spawn(kcm, &log)?);
        // Ready when it has given the `default` namespace its ServiceAccount.
        let account = format!("{url}/api/v1/namespaces/default/serviceaccounts/default");
        wait_ready(children.last_mut().expect("just pushed"), &log, || {
            let request = https.get(&account).bearer_auth(token);
            async move {
                let response = request.send().await.ok()?;
                response.status().is_success().then_some(())
            }
        })
        .await?;
    }
    Ok((
        Cluster {
            url,
            kubeconfig,
            kubelet_tls: pki.kubelet.clone(),
            controller_manager,
            runtime: tokio::runtime::Handle::current(),
        },
        children,
    ))
}

/// Starts `command` with its output in `log`, killed when the starting thread ends.
#[allow(unsafe_code)] // pre_exec is unsafe; the hook below only makes an async-signal-safe call
fn spawn(mut command: Command, log: &Path) -> anyhow::Result<Child> {
    use std::os::unix::process::CommandExt;
    let file = std::fs::File::create(log)?;
    command
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file);
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(std::io::Error::from)
        });
    }
    command
        .spawn()
        .with_context(|| format!("starting {:?}", command.get_program()))
}

/// Polls `ready` until it answers, the child exits (an error with its log's tail) or
/// [`START_WITHIN`] passes.
async fn wait_ready<F, Fut>(child: &mut Child, log: &Path, ready: F) -> anyhow::Result<()>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Option<()>>,
{
    let started = Instant::now();
    loop {
        if ready().await.is_some() {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            bail!("{} exited ({status}):\n{}", log.display(), tail(log));
        }
        if started.elapsed() > START_WITHIN {
            bail!(
                "not ready after {START_WITHIN:?}; {}:\n{}",
                log.display(),
                tail(log)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

fn kubeconfig_text(url: &str, ca_pem: &str, token: &str) -> String {
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "baton-test", "cluster": {"server": url, "certificate-authority-data": ca}}],
        "users": [{"name": "baton-test-admin", "user": {"token": token}}],
        "contexts": [{"name": "baton-test", "context": {"cluster": "baton-test", "user": "baton-test-admin", "namespace": "default"}}],
        "current-context": "baton-test",
    })
    .to_string()
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    std::io::Write::write_all(&mut file, text.as_bytes())?;
    Ok(())
}

fn random_hex() -> String {
    use std::hash::BuildHasher;
    let state = std::collections::hash_map::RandomState::new();
    (0..3u64)
        .map(|i| format!("{:016x}", state.hash_one((i, std::time::SystemTime::now()))))
        .collect()
}

/// Starts, once per test binary, the actors standing in for the scheduler and the kubelet,
/// on the control plane's runtime, each acting as the part it stands for.
pub fn start_actors(cluster: &'static Cluster) -> anyhow::Result<()> {
    static STARTED: OnceLock<Result<(), String>> = OnceLock::new();
    STARTED
        .get_or_init(|| {
            cluster
                .runtime
                .block_on(async {
                    let scheduler = cluster
                        .client_as_user("system:kube-scheduler", &["system:authenticated"])
                        .await?;
                    let node = format!("system:node:{}", super::kubelet::node::NODE_NAME);
                    let kubelet = cluster
                        .client_as_user(&node, &["system:nodes", "system:authenticated"])
                        .await?;
                    let kubelet = super::Kubelet::start_node(kubelet, &cluster.kubelet_tls).await?;
                    let scheduler = super::scheduler::Scheduler::start(scheduler);
                    // They run for the rest of the binary's life.
                    std::mem::forget((kubelet, scheduler));
                    Ok::<_, anyhow::Error>(())
                })
                .map_err(|e| format!("{e:#}"))
        })
        .clone()
        .map_err(|e| anyhow::anyhow!("starting the kubelet and scheduler actors: {e}"))
}
