//! The namespaces a pod worker serves (`--pod-namespaces`): every one, or only those listed,
//! so that a worker can run with Roles in those namespaces instead of a ClusterRole.

use std::collections::BTreeSet;

/// The namespaces a pod worker runs pods in and its janitor cleans.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ServedNamespaces {
    /// Every namespace: the worker needs cluster-wide rights on pods.
    #[default]
    All,
    /// Only these ([`ServedNamespaces::from_names`] makes no empty set): the worker needs
    /// rights on pods in them alone.
    Only(BTreeSet<String>),
}

/// A pod job asks for a namespace the worker does not serve. Trying again on a worker
/// configured alike fails the same way.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "namespace {namespace} is not served: this worker serves only the namespaces {served} \
     (--pod-namespaces); run the pod in one of them or add {namespace} to the worker's --pod-namespaces"
)]
pub struct NotServed {
    /// The namespace the job asked for.
    pub namespace: String,
    /// The namespaces served, comma-separated.
    pub served: String,
}

impl ServedNamespaces {
    /// Returns the namespaces `names` lists; none listed means every namespace.
    pub fn from_names(names: impl IntoIterator<Item = String>) -> ServedNamespaces {
        let names: BTreeSet<String> = names.into_iter().collect();
        if names.is_empty() {
            ServedNamespaces::All
        } else {
            ServedNamespaces::Only(names)
        }
    }

    /// Returns `Ok` when a pod may run in `namespace`.
    pub fn check(&self, namespace: &str) -> Result<(), NotServed> {
        match self {
            ServedNamespaces::All => Ok(()),
            ServedNamespaces::Only(names) if names.contains(namespace) => Ok(()),
            ServedNamespaces::Only(names) => Err(NotServed {
                namespace: namespace.to_owned(),
                served: names.iter().cloned().collect::<Vec<_>>().join(", "),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_names_serve_every_namespace() {
        let served = ServedNamespaces::from_names(Vec::new());
        assert_eq!(served, ServedNamespaces::All);
        assert_eq!(served.check("anything"), Ok(()));
    }

    #[test]
    fn listed_names_serve_only_themselves_and_the_refusal_names_them() {
        let served = ServedNamespaces::from_names(["jobs".to_owned(), "builds".to_owned()]);
        assert_eq!(served.check("jobs"), Ok(()));
        assert_eq!(served.check("builds"), Ok(()));
        let refused = served.check("kube-system").unwrap_err();
        assert_eq!(
            refused.to_string(),
            "namespace kube-system is not served: this worker serves only the namespaces \
             builds, jobs (--pod-namespaces); run the pod in one of them or add kube-system \
             to the worker's --pod-namespaces"
        );
    }
}
