// Entry point: routes (#/upload, #/jobs, #/jobs/<id>), the actions views call, polling, and the
// render loop. The whole UI state lives in `state` (state.js); views are stateless render
// functions of it.
import * as api from "./api.js";
import { mountRegions } from "./dom.js";
import { state, subscribe, update } from "./state.js";
import { checkFiles, checkPixelSize } from "./validate.js";
import { jobsView } from "./views/jobs.js";
import { loginView } from "./views/login.js";
import { resultView } from "./views/result.js";
import { uploadView } from "./views/upload.js";

const POLL_MS = 2000;
let pollTimer = null;
let lastAnnounced = "";

export function parseRoute(hash) {
  const parts = hash.replace(/^#\/?/, "").split("/").filter(Boolean);
  if (parts[0] === "jobs" && parts[1]) return { name: "result", jobId: decodeURIComponent(parts[1]) };
  if (parts[0] === "jobs") return { name: "jobs", jobId: null };
  return { name: "upload", jobId: null };
}

function announce(message) {
  if (message === lastAnnounced) return;
  lastAnnounced = message;
  document.getElementById("announcer").textContent = message;
}

// ---- actions: the only code that changes state ---------------------------------------------

const actions = {
  addFiles(files) {
    update((s) => {
      const { accepted, errors } = checkFiles(files, s.upload.files);
      s.upload.files = [...s.upload.files, ...accepted];
      s.upload.fileErrors = errors;
      s.upload.error = null;
    });
  },
  removeFile(index) {
    update((s) => { s.upload.files = s.upload.files.filter((_, i) => i !== index); s.upload.fileErrors = []; });
  },
  clearFiles() {
    update((s) => { s.upload.files = []; s.upload.fileErrors = []; s.upload.error = null; });
  },
  setPixelSize(text, validate) {
    update((s) => {
      s.upload.pixelSize = text;
      // While typing, only clear an old error; judge the value when the field is left.
      if (validate) s.upload.pixelSizeError = checkPixelSize(text).error;
      else if (s.upload.pixelSizeError && !checkPixelSize(text).error) s.upload.pixelSizeError = null;
    });
  },
  setModel(name) { update((s) => { s.upload.model = name; }); },
  setTraining(checked) { update((s) => { s.upload.training = checked; }); },

  async submit() {
    const upload = state.upload;
    const pixel = checkPixelSize(upload.pixelSize);
    if (pixel.error || !upload.files.length) {
      update((s) => {
        s.upload.pixelSizeError = pixel.error;
        if (!s.upload.files.length) s.upload.fileErrors = ["Choose at least one image to analyse."];
      });
      return;
    }
    update((s) => { s.upload.submitting = true; s.upload.progress = 0; s.upload.error = null; });
    try {
      const job = await api.submitJob(
        { files: upload.files, pixelSize: pixel.value, model: upload.model || state.models.default, training: upload.training },
        (fraction) => update((s) => { s.upload.progress = fraction; }),
      );
      // The training mark is per upload: the next images are not training images unless ticked again.
      update((s) => {
        s.upload.submitting = false; s.upload.files = []; s.upload.fileErrors = []; s.upload.training = false;
      });
      announce(`Job ${job.id.slice(0, 8)} was created and is waiting for analysis.`);
      window.location.hash = `#/jobs/${job.id}`;
    } catch (error) {
      update((s) => { s.upload.submitting = false; s.upload.error = error.message; });
    }
  },

  async signIn(username, password) {
    update((s) => { s.session.submitting = true; s.session.error = null; });
    try {
      const user = await api.signIn(username.trim(), password);
      update((s) => { s.session = { checked: true, user, error: null, submitting: false }; });
      announce(`Signed in as ${user.username}.`);
      startApp();
    } catch (error) {
      update((s) => { s.session.submitting = false; s.session.error = error.message; });
    }
  },

  async signOut() {
    try {
      await api.signOut();
    } finally {
      signedOut();
    }
  },

  showImage(index) { update((s) => { s.result.image = index; s.result.selected = null; }); },
  selectIslet(number) { update((s) => { s.result.selected = s.result.selected === number ? null : number; }); },
  sortBy(key) {
    update((s) => {
      const same = s.result.sort.key === key;
      s.result.sort = { key, direction: same && s.result.sort.direction === "ascending" ? "descending" : "ascending" };
    });
  },
};

// ---- loading and polling ---------------------------------------------------------------------

async function loadModels() {
  try {
    const body = await api.listModels();
    update((s) => {
      s.models = { list: body.models || [], default: body.default || "classical", error: null, loaded: true };
    });
  } catch (error) {
    update((s) => {
      s.models = { ...s.models, loaded: true, error: `${error.message} The default model will be used.` };
    });
  }
}

async function refreshJobs() {
  try {
    const body = await api.listJobs();
    update((s) => { s.jobs = { list: body.jobs || [], error: null, loaded: true }; });
  } catch (error) {
    update((s) => { s.jobs = { ...s.jobs, error: error.message, loaded: true }; });
  }
}

async function refreshResult(jobId) {
  try {
    const job = await api.getJob(jobId);
    if (state.route.jobId !== jobId) return;
    const wasDone = state.result.job?.state === "done" && state.result.data;
    update((s) => { s.result.job = job; s.result.error = null; });
    if (job.state === "done" && !wasDone) {
      const data = await api.getResult(jobId);
      if (state.route.jobId !== jobId) return;
      update((s) => { s.result.data = data; });
      announce(`Job ${jobId.slice(0, 8)} is done: ${data.images?.reduce((n, i) => n + (i.islets?.length || 0), 0)} islets found.`);
    } else if (job.state === "failed") {
      announce(`Job ${jobId.slice(0, 8)} failed.`);
    }
  } catch (error) {
    if (state.route.jobId === jobId) update((s) => { s.result.error = error.message; });
  }
}

function finished(job) {
  return job && (job.state === "failed" || (job.state === "done" && state.result.data));
}

function schedulePolling() {
  clearTimeout(pollTimer);
  const route = state.route;
  const tick = async () => {
    if (route !== state.route) return; // the user went elsewhere
    if (route.name === "jobs") await refreshJobs();
    if (route.name === "result") {
      await refreshResult(route.jobId);
      if (finished(state.result.job) || (state.result.error && !state.result.job)) return;
    }
    if (route === state.route && route.name !== "upload") pollTimer = setTimeout(tick, POLL_MS);
  };
  tick();
}

let firstRoute = true;

function onRouteChange() {
  const route = parseRoute(window.location.hash);
  update((s) => {
    s.route = route;
    if (route.name === "result" && s.result.job?.id !== route.jobId) {
      s.result = { ...s.result, job: null, data: null, error: null, image: 0, selected: null };
    }
  });
  schedulePolling();
  document.title = { upload: "Upload — IsletNet", jobs: "Jobs — IsletNet", result: "Result — IsletNet" }[route.name];
  // Move focus to the new screen's heading so keyboard and screen-reader users land there
  // (not on the first load: the browser's own start position is expected then).
  if (!firstRoute) document.getElementById("page-title")?.focus();
  firstRoute = false;
}

// ---- the session -------------------------------------------------------------------------------

function signedOut() {
  clearTimeout(pollTimer);
  update((s) => { s.session = { checked: true, user: null, error: s.session.error, submitting: false }; });
  document.title = "Sign in — IsletNet";
}

function startApp() {
  onRouteChange();
  loadModels();
}

async function checkSession() {
  try {
    const user = await api.getSession();
    update((s) => { s.session = { ...s.session, checked: true, user }; });
    if (user) startApp();
    else signedOut();
  } catch (error) {
    update((s) => { s.session = { ...s.session, checked: true, error: error.message }; });
  }
}

// ---- rendering -------------------------------------------------------------------------------

function render(current) {
  const views = { upload: uploadView, jobs: jobsView, result: resultView };
  const signOut = document.getElementById("sign-out");
  signOut.hidden = !current.session.user;
  signOut.textContent = current.session.user ? `Sign out ${current.session.user.username}` : "Sign out";
  document.getElementById("nav").hidden = !current.session.user;
  if (!current.session.checked) return;
  if (!current.session.user) {
    mountRegions(document.getElementById("main"), loginView(current, actions));
    return;
  }
  mountRegions(document.getElementById("main"), views[current.route.name](current, actions));
  for (const link of document.querySelectorAll("#nav a")) {
    const active = link.dataset.route === current.route.name
      || (link.dataset.route === "jobs" && current.route.name === "result");
    if (active) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

subscribe(render);
api.whenSignedOut(() => { if (state.session.user) signedOut(); });
window.addEventListener("hashchange", () => { if (state.session.user) onRouteChange(); });
document.getElementById("sign-out").addEventListener("click", () => actions.signOut());
checkSession();
