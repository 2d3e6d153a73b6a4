//! Validation of a `helm` node's settings, every problem with its field path.

use serde_json::Value;

use crate::Duration;

use super::*;

/// Checks a `helm` node's settings; `at` is the path of its `helm` map.
pub fn validate(at: &str, spec: Option<&HelmSpec>) -> Vec<crate::SpecError> {
    use crate::SpecError;
    let Some(spec) = spec else {
        return vec![SpecError::new(
            at,
            "a helm node needs helm: {release, namespace, chart: {url, name}}",
        )];
    };
    let mut errors = Vec::new();
    let release = &spec.release;
    if !is_release_name(release) {
        errors.push(SpecError::new(
            format!("{at}.release"),
            format!("invalid release name {release:?}: {RELEASE_NAME_RULE}"),
        ));
    }
    if !crate::ids::is_dns_label(&spec.namespace) {
        errors.push(SpecError::new(
            format!("{at}.namespace"),
            format!("invalid namespace {:?}", spec.namespace),
        ));
    }
    match (&spec.chart, spec.action) {
        (None, HelmAction::Apply) => errors.push(SpecError::new(
            format!("{at}.chart"),
            "an apply needs a chart: {url, name, version}",
        )),
        (Some(chart), _) => {
            if let Some(problem) = chart_url_problem(&chart.url) {
                errors.push(SpecError::new(format!("{at}.chart.url"), problem));
            }
            if chart.name.trim().is_empty() {
                errors.push(SpecError::new(
                    format!("{at}.chart.name"),
                    "missing: the chart's name",
                ));
            }
        }
        (None, HelmAction::Uninstall) => {}
    }
    check_release_settings(
        at,
        ReleaseSettings {
            timeout: spec.timeout,
            interval: spec.interval,
            install: &spec.install,
            upgrade: &spec.upgrade,
            rollback: &spec.rollback,
            uninstall: &spec.uninstall,
        },
        &mut errors,
    );
    if spec.driver == Some(HelmDriver::Flux)
        && let Some(problem) = spec.flux_values_problem()
    {
        errors.push(SpecError::new(format!("{at}.valuesFrom"), problem));
    }
    errors
}

/// What Helm accepts as a release name, said to users.
pub(crate) const RELEASE_NAME_RULE: &str = "use at most 53 lowercase letters, digits, '-' and '.'";

/// Returns whether `name` is a release name Helm accepts: a DNS-1123 subdomain of at most 53
/// characters.
pub(crate) fn is_release_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 53 && name.split('.').all(crate::ids::is_dns_label)
}

/// Returns what is wrong with a chart repository URL, if anything.
pub(crate) fn chart_url_problem(url: &str) -> Option<String> {
    let scheme = ["http://", "https://", "oci://"]
        .into_iter()
        .find(|s| url.starts_with(s));
    match scheme {
        Some(scheme) if url.len() > scheme.len() => None,
        _ => Some(format!(
            "{url:?} is not a Helm repository URL (http:// or https://) or an OCI registry path (oci://)"
        )),
    }
}

/// The settings a release has wherever it is written: in a `helm` node, or in an
/// application's `release`.
pub(crate) struct ReleaseSettings<'a> {
    pub(crate) timeout: Option<Duration>,
    pub(crate) interval: Option<Duration>,
    pub(crate) install: &'a Option<Value>,
    pub(crate) upgrade: &'a Option<Value>,
    pub(crate) rollback: &'a Option<Value>,
    pub(crate) uninstall: &'a Option<Value>,
}

/// Checks a release's durations and Flux options; `at` is the path of the map holding them.
pub(crate) fn check_release_settings(
    at: &str,
    settings: ReleaseSettings<'_>,
    errors: &mut Vec<crate::SpecError>,
) {
    use crate::SpecError;
    for (field, value) in [
        ("timeout", settings.timeout),
        ("interval", settings.interval),
    ] {
        if value.is_some_and(|d| d.0.is_zero()) {
            errors.push(SpecError::new(
                format!("{at}.{field}"),
                "must be longer than zero",
            ));
        }
    }
    for (field, value) in [
        ("install", settings.install),
        ("upgrade", settings.upgrade),
        ("rollback", settings.rollback),
        ("uninstall", settings.uninstall),
    ] {
        if value.as_ref().is_some_and(|v| !v.is_object()) {
            errors.push(SpecError::new(
                format!("{at}.{field}"),
                "must be a map of Flux's options",
            ));
        }
    }
}

/// Returns whether `version` names one version rather than a range.
pub(crate) fn is_exact_version(version: &str) -> bool {
    !version.contains(['*', '^', '~', '>', '<', '=', ' ', ',', '|', 'x', 'X'])
}
