// The backend REST API as the UI uses it. All URLs are relative ("api/...") so the UI works
// under any origin and path prefix that proxies /api to the backend. Every failure becomes an
// ApiError whose message is one sentence to show the user.

export class ApiError extends Error {
  constructor(message, status = 0) {
    super(message);
    this.status = status;
  }
}

// The session's CSRF token: sent with every request that changes state (the cookie itself is
// HttpOnly and never seen here).
let csrfToken = "";

// Called when the server says the session is over (401), so the app shows the sign-in screen.
let onSignedOut = () => {};
export function whenSignedOut(callback) { onSignedOut = callback; }

const UNREACHABLE = "The IsletNet server cannot be reached; check the network connection and try again.";

async function errorFrom(response) {
  try {
    const body = await response.json();
    if (body && typeof body.error === "string") return new ApiError(body.error, response.status);
  } catch {
    // not JSON: fall through to a sentence built from the status
  }
  if (response.status === 413) return new ApiError("The upload is too large for the server; send fewer or smaller images.", 413);
  if (response.status >= 500) return new ApiError(`The server failed (HTTP ${response.status}); try again in a minute.`, response.status);
  return new ApiError(`The server refused the request (HTTP ${response.status}).`, response.status);
}

export async function getJson(path) {
  let response;
  try {
    response = await fetch(path, { headers: { Accept: "application/json" }, cache: "no-store" });
  } catch {
    throw new ApiError(UNREACHABLE);
  }
  if (response.status === 401) onSignedOut();
  if (!response.ok) throw await errorFrom(response);
  return response.json();
}

async function postJson(path, body) {
  let response;
  try {
    response = await fetch(path, {
      method: "POST", cache: "no-store", credentials: "same-origin",
      headers: { Accept: "application/json", "Content-Type": "application/json", "X-CSRF-Token": csrfToken },
      body: JSON.stringify(body || {}),
    });
  } catch {
    throw new ApiError(UNREACHABLE);
  }
  if (!response.ok) throw await errorFrom(response);
  return response.status === 204 ? null : response.json();
}

// The signed-in account ({username, role, team, csrf_token}), or null when nobody is.
export async function getSession() {
  try {
    const session = await getJson("api/auth/session");
    csrfToken = session.csrf_token || "";
    return session;
  } catch (error) {
    if (error.status === 401) return null;
    throw error;
  }
}

export async function signIn(username, password) {
  const session = await postJson("api/auth/login", { username, password });
  csrfToken = session.csrf_token || "";
  return session;
}

export async function signOut() {
  await postJson("api/auth/logout");
  csrfToken = "";
}

export const listModels = () => getJson("api/models");
export const listJobs = () => getJson("api/jobs");
export const getJob = (id) => getJson(`api/jobs/${encodeURIComponent(id)}`);
export const getResult = (id) => getJson(`api/jobs/${encodeURIComponent(id)}/result`);

export function overlayUrl(id, image) {
  return `api/jobs/${encodeURIComponent(id)}/overlay.png?image=${image}`;
}

export function downloadUrl(id, name) {
  return `api/jobs/${encodeURIComponent(id)}/${name}`;
}

// POST api/jobs with XMLHttpRequest (fetch cannot report upload progress). Resolves to the
// created job {id, state}; `onProgress` gets 0..1.
export function submitJob({ files, pixelSize, model, training }, onProgress) {
  const form = new FormData();
  for (const file of files) form.append("images", file, file.name);
  form.append("pixel_size_um", String(pixelSize));
  if (model) form.append("model", model);
  form.append("training", training ? "true" : "false");
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    request.open("POST", "api/jobs");
    request.responseType = "text";
    request.setRequestHeader("Accept", "application/json");
    request.setRequestHeader("X-CSRF-Token", csrfToken);
    request.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total);
    });
    request.addEventListener("load", () => {
      let body = null;
      try {
        body = JSON.parse(request.responseText);
      } catch {
        body = null;
      }
      if (request.status === 401) onSignedOut();
      if (request.status >= 200 && request.status < 300 && body && body.id) {
        resolve(body);
      } else if (body && typeof body.error === "string") {
        reject(new ApiError(body.error, request.status));
      } else if (request.status === 413) {
        reject(new ApiError("The upload is too large for the server; send fewer or smaller images.", 413));
      } else {
        reject(new ApiError(`The server refused the upload (HTTP ${request.status}); try again.`, request.status));
      }
    });
    request.addEventListener("error", () => reject(new ApiError(UNREACHABLE)));
    request.send(form);
  });
}
