//! Least privilege on the bus: the subjects each role of a Baton deployment may publish and
//! subscribe to, and the nats-server `authorization` block that grants them
//! (`deploy/nats/permissions.conf` is its rendering for the default prefix; a test keeps the
//! two equal).
//!
//! Every grant follows from what the role's code does on the bus: the streams and consumers
//! of [`crate::Bus`], JetStream's API subjects for them, and a reply prefix of its own, so no
//! role reads the replies another asked for.

use baton_schemas::NodeKind;

/// A part of a deployment that connects to the bus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The planner: it owns the streams, publishes jobs and cancel notices, consumes events
    /// and triggers.
    Planner,
    /// A worker of one kind: it takes jobs of that kind only and publishes completion events.
    Worker(NodeKind),
    /// A publisher of triggers, on the workflows' trigger subjects only.
    Trigger,
    /// A read-only observer: stream and consumer state, events.
    Observer,
}

/// What a deployment grants beyond the fixed roles.
#[derive(Clone, Debug)]
pub struct PermissionOptions {
    /// The subject prefix (`baton`).
    pub prefix: String,
    /// The subjects the trigger publisher may publish on (default: every workflow's trigger
    /// subject, `<p>.triggers.*`; name some `<p>.triggers.<workflow>` to narrow it).
    pub trigger_subjects: Vec<String>,
    /// The subjects a `publish` worker may publish on for its nodes (default: the workflows'
    /// trigger subjects).
    pub publish_subjects: Vec<String>,
}

impl PermissionOptions {
    /// Returns the defaults for a prefix.
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            trigger_subjects: vec![format!("{prefix}.triggers.*")],
            publish_subjects: vec![format!("{prefix}.triggers.*")],
        }
    }
}

/// The subjects one role may publish and subscribe to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Permissions {
    /// Subjects it may publish on (JetStream API requests and acks included).
    pub publish: Vec<String>,
    /// Subjects it may subscribe to.
    pub subscribe: Vec<String>,
}

impl Role {
    /// Every role, workers of every kind included, in the order the configuration lists them.
    pub fn all() -> Vec<Role> {
        let mut roles = vec![Role::Planner];
        roles.extend(NodeKind::ALL.iter().map(|kind| Role::Worker(*kind)));
        roles.extend([Role::Trigger, Role::Observer]);
        roles
    }

    /// Returns the NATS user name of the role (`planner`, `worker-noop`, `trigger`,
    /// `observer`).
    pub fn user(self) -> String {
        match self {
            Role::Planner => "planner".to_owned(),
            Role::Worker(kind) => format!("worker-{kind}"),
            Role::Trigger => "trigger".to_owned(),
            Role::Observer => "observer".to_owned(),
        }
    }

    /// Returns the role's reply prefix (`--nats-inbox-prefix`): `_INBOX_planner`, ...
    pub fn inbox_prefix(self) -> String {
        format!("_INBOX_{}", self.user().replace('-', "_"))
    }

    /// Returns the environment variable the generated configuration reads the role's
    /// password from: `BATON_NATS_PASSWORD_PLANNER`, `BATON_NATS_PASSWORD_WORKER_NOOP`, ...
    pub fn password_variable(self) -> String {
        format!(
            "BATON_NATS_PASSWORD_{}",
            self.user().replace('-', "_").to_ascii_uppercase()
        )
    }

    /// Returns what the role may do on a bus with these options.
    pub fn permissions(self, options: &PermissionOptions) -> Permissions {
        let p = &options.prefix;
        let s = p.to_ascii_uppercase();
        let api = "$JS.API";
        let inbox = format!("{}.>", self.inbox_prefix());
        match self {
            Role::Planner => Permissions {
                // The planner creates and checks the streams and the inputs store, makes its
                // consumers, publishes jobs, cancel notices and fires, writes large inputs and
                // its state, holds its lease.
                publish: vec![
                    format!("{api}.>"),
                    format!("{p}.>"),
                    format!("$JS.ACK.{s}_EVENTS.>"),
                    format!("$JS.ACK.{s}_TRIGGERS.>"),
                    format!("$O.{s}_INPUTS.>"),
                    // Its lease, a key of the `<P>_LEADER` bucket.
                    format!("$KV.{s}_LEADER.>"),
                ],
                subscribe: vec![inbox],
            },
            Role::Worker(kind) => {
                let durable = format!("worker-{kind}");
                let mut publish = vec![
                    // Checking that the streams are there (a worker started first waits for
                    // the planner to make them: it may not make or change one).
                    format!("{api}.STREAM.INFO.{s}_JOBS"),
                    format!("{api}.STREAM.INFO.{s}_EVENTS"),
                    format!("{api}.STREAM.INFO.{s}_TRIGGERS"),
                    format!("{api}.STREAM.INFO.{s}_AUDIT"),
                    format!("{api}.STREAM.INFO.{s}_CANCELS"),
                    // Its kind's shared consumer: made with its kind's filter only, pulled, acked.
                    format!("{api}.CONSUMER.CREATE.{s}_JOBS.{durable}.{p}.jobs.{kind}"),
                    format!("{api}.CONSUMER.INFO.{s}_JOBS.{durable}"),
                    format!("{api}.CONSUMER.MSG.NEXT.{s}_JOBS.{durable}"),
                    format!("$JS.ACK.{s}_JOBS.{durable}.>"),
                    // Its kind's shared consumer of batches of jobs, the same way.
                    format!("{api}.CONSUMER.CREATE.{s}_JOBS.{durable}-batch.{p}.jobs.{kind}.batch"),
                    format!("{api}.CONSUMER.INFO.{s}_JOBS.{durable}-batch"),
                    format!("{api}.CONSUMER.MSG.NEXT.{s}_JOBS.{durable}-batch"),
                    format!("$JS.ACK.{s}_JOBS.{durable}-batch.>"),
                    // Completion events.
                    format!("{p}.events.*"),
                    // Cancel notices, read by an ordered consumer of its own.
                    format!("{api}.CONSUMER.CREATE.{s}_CANCELS"),
                    format!("{api}.CONSUMER.MSG.NEXT.{s}_CANCELS.*"),
                    format!("{api}.CONSUMER.INFO.{s}_CANCELS.*"),
                    format!("{api}.CONSUMER.DELETE.{s}_CANCELS.*"),
                    // Inputs too large to travel with their job, read from the object store
                    // one message at a time: its description, then each chunk. No consumer
                    // of the store, so no delivery subject of the worker's choosing.
                    format!("{api}.STREAM.INFO.OBJ_{s}_INPUTS"),
                    format!("{api}.DIRECT.GET.OBJ_{s}_INPUTS"),
                    format!("{api}.DIRECT.GET.OBJ_{s}_INPUTS.>"),
                ];
                if kind == NodeKind::Publish {
                    // A publish node's message, to a stream when one captures its subject.
                    publish.push(format!("{api}.STREAM.NAMES"));
                    publish.extend(options.publish_subjects.iter().cloned());
                }
                Permissions {
                    publish,
                    subscribe: vec![inbox],
                }
            }
            Role::Trigger => Permissions {
                publish: options.trigger_subjects.clone(),
                subscribe: vec![inbox],
            },
            Role::Observer => Permissions {
                publish: vec![
                    format!("{api}.INFO"),
                    format!("{api}.STREAM.NAMES"),
                    format!("{api}.STREAM.LIST"),
                    format!("{api}.STREAM.INFO.*"),
                    format!("{api}.CONSUMER.NAMES.*"),
                    format!("{api}.CONSUMER.LIST.*"),
                    format!("{api}.CONSUMER.INFO.*.*"),
                ],
                subscribe: vec![inbox, format!("{p}.events.>"), format!("{p}.audit.>")],
            },
        }
    }
}

/// Returns the nats-server `authorization` block: one user per role, its password read by
/// the server from the role's environment variable, and its permissions. Include it in a
/// server's configuration (`include permissions.conf`).
pub fn server_config(options: &PermissionOptions) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "# Baton's roles on a nats-server, for the subject prefix `{}`.\n\
         # Generated by `baton nats-permissions`; include it in the server's configuration.\n\
         # Each role connects as its user, with its password file (--nats-user,\n\
         # --nats-password-file) and its own reply prefix (--nats-inbox-prefix); the server\n\
         # reads the passwords from the environment variables named. The server parses a\n\
         # variable's value as it parses its files: start each password with a letter (a value\n\
         # that starts with a digit or `-` is read as a number), e.g. `p$(openssl rand -hex 24)`.\n\
         # A client that is not one of these users is refused.\n",
        options.prefix
    ));
    out.push_str("authorization {\n  users = [\n");
    for role in Role::all() {
        let permissions = role.permissions(options);
        out.push_str(&format!(
            "    # --nats-user {} --nats-inbox-prefix {}\n",
            role.user(),
            role.inbox_prefix()
        ));
        out.push_str(&format!(
            "    {{\n      user: \"{}\"\n      password: ${}\n      permissions: {{\n",
            role.user(),
            role.password_variable()
        ));
        out.push_str(&format!(
            "        publish: {{ allow: {} }}\n",
            list(&permissions.publish)
        ));
        out.push_str(&format!(
            "        subscribe: {{ allow: {} }}\n",
            list(&permissions.subscribe)
        ));
        out.push_str("      }\n    }\n");
    }
    out.push_str("  ]\n}\n");
    out
}

/// Returns a list of subjects, one per line, indented under its key.
fn list(subjects: &[String]) -> String {
    let mut out = String::from("[\n");
    for subject in subjects {
        out.push_str(&format!("          \"{subject}\"\n"));
    }
    out.push_str("        ]");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `deploy/nats/permissions.conf` is what the code generates for the default prefix.
    #[test]
    fn the_deployed_permission_file_is_the_generated_one() {
        let file = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../deploy/nats/permissions.conf"
        );
        let deployed = std::fs::read_to_string(file).unwrap();
        assert_eq!(
            deployed,
            server_config(&PermissionOptions::new("baton")),
            "deploy/nats/permissions.conf drifted: run `make nats-permissions`"
        );
    }

    #[test]
    fn a_worker_may_take_only_its_kind_and_publish_only_events() {
        let options = PermissionOptions::new("baton");
        let noop = Role::Worker(NodeKind::Noop).permissions(&options);
        assert!(
            noop.publish
                .iter()
                .all(|s| !s.contains("worker-exec") && !s.contains("jobs.exec"))
        );
        assert!(
            noop.publish
                .iter()
                .all(|s| !s.starts_with("baton.") || s == "baton.events.*")
        );
        assert_eq!(noop.subscribe, ["_INBOX_worker_noop.>"]);
        let trigger = Role::Trigger.permissions(&options);
        assert_eq!(trigger.publish, ["baton.triggers.*"]);
    }
}
