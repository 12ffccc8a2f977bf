// The Upload screen: choose or drop images, set pixel size, model and the training mark, send.
import { h } from "../dom.js";
import * as format from "../format.js";
import { ACCEPTED_EXTENSIONS, MAX_FILE_MB } from "../validate.js";

export function uploadView(state, actions) {
  const upload = state.upload;
  return [
    { id: "upload-title", key: 1, render: () => h("h1", { id: "page-title", tabindex: "-1" }, "Upload images") },
    {
      id: "upload-form",
      key: [state.models, upload.files.map((f) => [f.name, f.size]), upload.fileErrors, upload.pixelSizeError,
        upload.submitting, upload.model],
      render: () => uploadForm(state, actions),
    },
    {
      id: "upload-status",
      key: [upload.submitting, Math.round(upload.progress * 100), upload.error],
      render: () => uploadStatus(upload),
    },
  ];
}

function uploadForm(state, actions) {
  const upload = state.upload;
  const models = state.models;
  const selectedModel = upload.model || models.default;
  const files = upload.files;
  const canSubmit = files.length > 0 && !upload.submitting && !upload.pixelSizeError;
  return h("form", {
    className: "upload-grid", novalidate: true, "aria-describedby": "upload-help",
    onSubmit: (event) => { event.preventDefault(); actions.submit(); },
  },
  h("section", { className: "panel stack", "aria-labelledby": "images-heading" },
    h("h2", { id: "images-heading" }, "Images"),
    dropzone(actions, upload.submitting),
    upload.fileErrors.length
      ? h("div", { className: "notice error", role: "alert" },
        h("ul", { className: "errors" }, upload.fileErrors.map((text) => h("li", {}, text))))
      : null,
    files.length
      ? h("ul", { className: "file-list", "aria-label": "Chosen images" },
        files.map((file, index) => h("li", {},
          h("span", { className: "text" }, file.name),
          h("span", { className: "size" }, format.bytes(file.size)),
          h("button", {
            type: "button", className: "link", "aria-label": `Remove ${file.name}`,
            dataset: { focusKey: `remove-${index}` }, disabled: upload.submitting,
            onClick: () => actions.removeFile(index),
          }, "Remove"))))
      : h("p", { className: "hint", id: "no-files" }, "No images chosen yet."),
  ),
  h("section", { className: "panel stack", "aria-labelledby": "options-heading" },
    h("h2", { id: "options-heading" }, "Analysis"),
    h("div", { className: "field" },
      h("label", { for: "pixel-size" }, "Pixel size (µm per pixel)"),
      h("input", {
        id: "pixel-size", name: "pixel_size_um", type: "number", step: "any", min: "0.001", max: "100",
        inputmode: "decimal", required: true, value: upload.pixelSize, dataset: { focusKey: "pixel-size" },
        "aria-invalid": upload.pixelSizeError ? "true" : null,
        "aria-describedby": upload.pixelSizeError ? "pixel-size-error" : "pixel-size-hint",
        onInput: (event) => actions.setPixelSize(event.target.value, false),
        onChange: (event) => actions.setPixelSize(event.target.value, true),
      }),
      upload.pixelSizeError
        ? h("span", { id: "pixel-size-error", className: "hint", role: "alert" }, upload.pixelSizeError)
        : h("span", { id: "pixel-size-hint", className: "hint" }, "From the microscope calibration; default 0.843."),
    ),
    h("div", { className: "field" },
      h("label", { for: "model" }, "Model"),
      h("select", {
        id: "model", name: "model", dataset: { focusKey: "model" }, disabled: !models.loaded,
        onChange: (event) => actions.setModel(event.target.value),
      },
      (models.list.length ? models.list : [models.default]).map((name) =>
        h("option", { value: name, selected: name === selectedModel }, name === models.default ? `${name} (default)` : name))),
      models.error ? h("span", { className: "hint", role: "alert" }, models.error) : null,
    ),
    h("div", { className: "check" },
      h("input", {
        id: "training", name: "training", type: "checkbox", checked: upload.training, dataset: { focusKey: "training" },
        "aria-describedby": "training-hint", onChange: (event) => actions.setTraining(event.target.checked),
      }),
      h("div", {},
        h("label", { for: "training" }, "Use these images for training"),
        h("div", { id: "training-hint", className: "hint" },
          "Marked images are kept (never deleted by retention) and exported once for the next model training."))),
    h("div", { className: "actions" },
      h("button", { type: "submit", className: "primary", disabled: !canSubmit, dataset: { focusKey: "submit" } },
        upload.submitting ? "Uploading…" : files.length > 1 ? `Analyse ${files.length} images` : "Analyse image"),
      files.length ? h("button", {
        type: "button", disabled: upload.submitting, dataset: { focusKey: "clear" }, onClick: () => actions.clearFiles(),
      }, "Clear") : null),
    h("p", { id: "upload-help", className: "hint" },
      `PNG, JPEG or TIFF of a dithizone-stained sample, up to ${MAX_FILE_MB} MB each. All images of one upload form one job.`),
  ));
}

function dropzone(actions, disabled) {
  const zone = h("label", { className: "dropzone", for: "file-input" },
    h("strong", {}, "Drop images here"),
    h("span", {}, "or press to choose files"),
    h("input", {
      id: "file-input", type: "file", multiple: true, accept: ACCEPTED_EXTENSIONS.join(","), disabled,
      dataset: { focusKey: "file-input" }, "aria-describedby": "upload-help",
      onChange: (event) => { actions.addFiles([...event.target.files]); event.target.value = ""; },
    }));
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("dragging"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    if (!disabled) actions.addFiles([...event.dataTransfer.files]);
  });
  return zone;
}

function uploadStatus(upload) {
  if (upload.error) {
    return h("div", { className: "notice error", role: "alert", id: "upload-error" }, upload.error);
  }
  if (upload.submitting) {
    return h("div", { className: "notice", role: "status" },
      h("label", { for: "upload-progress" }, `Uploading… ${Math.round(upload.progress * 100)} %`),
      h("progress", { id: "upload-progress", max: "1", value: String(upload.progress) }));
  }
  return null;
}
