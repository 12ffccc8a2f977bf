// The sign-in screen: user name and password; the server's one sentence when it refuses (the
// same for a wrong password and an unknown account, and "try again in N seconds" when limited).
import { h } from "../dom.js";

export function loginView(state, actions) {
  const session = state.session;
  return [
    { id: "login-title", key: 1, render: () => h("h1", { id: "page-title", tabindex: "-1" }, "Sign in") },
    {
      id: "login-form", key: [session.submitting, session.error],
      render: () => h("form", {
        className: "panel login", id: "login-form", novalidate: true,
        onSubmit: (event) => {
          event.preventDefault();
          const form = event.currentTarget;
          actions.signIn(form.elements.username.value, form.elements.password.value);
        },
      },
      session.error ? h("div", { className: "notice error", role: "alert", id: "login-error" }, session.error) : null,
      h("label", { for: "login-username" }, "User name"),
      h("input", { id: "login-username", name: "username", autocomplete: "username", required: true,
        dataset: { focusKey: "username" }, disabled: session.submitting }),
      h("label", { for: "login-password" }, "Password"),
      h("input", { id: "login-password", name: "password", type: "password", autocomplete: "current-password",
        required: true, dataset: { focusKey: "password" }, disabled: session.submitting }),
      h("button", { type: "submit", className: "primary", disabled: session.submitting },
        session.submitting ? "Signing in…" : "Sign in")),
    },
  ];
}
