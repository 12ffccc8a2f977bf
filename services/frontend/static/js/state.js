// The one central state object of the UI and the only way to change it.
// Views never keep their own state: they render from `state` and call actions, which call `update`.

export const state = {
  route: { name: "upload", jobId: null },
  // Who is signed in (GET api/auth/session); `user` null shows the sign-in screen.
  session: { checked: false, user: null, error: null, submitting: false },
  models: { list: [], default: "classical", error: null, loaded: false },
  upload: {
    files: [],            // File objects chosen or dropped
    fileErrors: [],       // sentences about files refused on the client
    pixelSize: "0.843",   // kept as typed; validated on change and before submit
    pixelSizeError: null,
    model: null,
    training: false,
    submitting: false,
    progress: 0,          // 0..1 of the upload itself
    error: null,          // the server's sentence when it refused the upload
  },
  jobs: { list: [], error: null, loaded: false },
  result: {
    job: null,            // GET api/jobs/<id>
    data: null,           // GET api/jobs/<id>/result once done
    error: null,
    image: 0,             // index of the image shown
    sort: { key: "number", direction: "ascending" },
    selected: null,       // islet number highlighted on the overlay
  },
};

const listeners = new Set();

// Apply `change` (a function mutating a draft of the state) and tell every listener once.
export function update(change) {
  change(state);
  for (const listener of listeners) listener(state);
}

export function subscribe(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}
