// What every action a person takes goes through: a question in a <dialog> (not
// window.confirm, which a headless test cannot answer and which blocks the tab's streams),
// then the API call, then its outcome in words in the page. A refusal is never silent.

import { api, el, reasons } from "./api.js";

let dialog = null;

/// The one confirmation dialog, made on first use: `#confirm` with `#confirm-text`, and
/// the buttons `#confirm-yes` and `#confirm-no`.
function confirmDialog() {
  if (dialog) return dialog;
  dialog = el("dialog", { id: "confirm", "aria-labelledby": "confirm-text" },
    el("form", { method: "dialog" },
      el("p", { id: "confirm-text" }),
      el("div", { class: "buttons" },
        // "No" first and autofocused: Enter on a question read too fast does nothing.
        el("button", { id: "confirm-no", value: "no", autofocus: "" }, "Cancel"),
        el("button", { id: "confirm-yes", value: "yes", class: "danger" }, "Yes"))));
  document.body.append(dialog);
  return dialog;
}

/// Asks `question`; resolves true when the person answers yes (Escape is no).
export function ask(question, yes = "Yes") {
  const d = confirmDialog();
  d.querySelector("#confirm-text").textContent = question;
  d.querySelector("#confirm-yes").textContent = yes;
  d.returnValue = "";
  return new Promise((resolve) => {
    d.addEventListener("close", () => resolve(d.returnValue === "yes"), { once: true });
    d.showModal();
  });
}

/// An element where actions' outcomes are shown: `role="alert"`, so a screen reader says a
/// refusal as it comes.
export function outcomeLine(id = "outcome") {
  return el("p", { id, class: "outcome", role: "alert" });
}

/// Words for an answer that is not 2xx: what the status means for the person, then the
/// API's own reasons.
export function refusalWords(status, why, what) {
  switch (status) {
    case 403:
      return `forbidden: your token's role may not ${what} (${why})`;
    case 404:
      return `not found: ${why}`;
    case 409:
      return `conflict: ${why}`;
    default:
      return `${what} failed (HTTP ${status}): ${why}`;
  }
}

/// Asks `question`, then sends `method path` with `body` (JSON) and shows the outcome in
/// `out`: `done` on success, the refusal in words otherwise (`what` says the action, as in
/// "resume this Cell"). Resolves to the response's JSON on success, null otherwise (the
/// person said no, the API refused, or the network failed).
export async function act({ question, yes, what, method = "POST", path, body, out, done }) {
  if (!(await ask(question, yes))) {
    out.textContent = "";
    return null;
  }
  out.className = "outcome";
  delete out.dataset.status;
  out.textContent = `${what}: sending…`;
  const options = { method };
  if (body !== undefined) {
    options.body = JSON.stringify(body);
    options.headers = { "Content-Type": "application/json" };
  }
  let response;
  try {
    response = await api(path, options);
  } catch (e) {
    out.className = "outcome refused";
    out.textContent = `${what} failed: ${e.message}`;
    return null;
  }
  if (!response.ok) {
    out.className = "outcome refused";
    out.dataset.status = String(response.status);
    out.textContent = refusalWords(response.status, await reasons(response), what);
    return null;
  }
  const answer = await response.json().catch(() => ({}));
  out.dataset.status = String(response.status);
  out.textContent = done || `${what}: done`;
  return answer;
}
