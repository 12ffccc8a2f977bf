// Client-side checks before an upload. The server checks everything again (it is the authority);
// these only save the user a round trip and say what is wrong in one sentence.

export const ACCEPTED_TYPES = ["image/png", "image/jpeg", "image/tiff"];
export const ACCEPTED_EXTENSIONS = [".png", ".jpg", ".jpeg", ".tif", ".tiff"];
export const MAX_FILE_MB = 200;   // the default MAX_UPLOAD_MB of the backend
export const MAX_FILES = 50;

function extension(name) {
  const dot = name.lastIndexOf(".");
  return dot < 0 ? "" : name.slice(dot).toLowerCase();
}

// Split `files` into accepted files and sentences about the refused ones.
export function checkFiles(files, alreadyChosen = []) {
  const accepted = [];
  const errors = [];
  const seen = new Set(alreadyChosen.map((file) => `${file.name}:${file.size}`));
  for (const file of files) {
    const typeOk = ACCEPTED_TYPES.includes(file.type) || ACCEPTED_EXTENSIONS.includes(extension(file.name));
    if (!typeOk) {
      errors.push(`“${file.name}” is not a PNG, JPEG or TIFF image; choose an image file.`);
    } else if (file.size === 0) {
      errors.push(`“${file.name}” is empty; choose the image file again.`);
    } else if (file.size > MAX_FILE_MB * 1024 * 1024) {
      errors.push(`“${file.name}” is larger than ${MAX_FILE_MB} MB; reduce it or split the sample into several images.`);
    } else if (seen.has(`${file.name}:${file.size}`)) {
      errors.push(`“${file.name}” is already in the list.`);
    } else if (alreadyChosen.length + accepted.length >= MAX_FILES) {
      errors.push(`At most ${MAX_FILES} images go into one job; “${file.name}” was left out.`);
    } else {
      accepted.push(file);
      seen.add(`${file.name}:${file.size}`);
    }
  }
  return { accepted, errors };
}

// The pixel size as a number, or a sentence saying why the text is not one.
export function checkPixelSize(text) {
  const value = Number(String(text).trim().replace(",", "."));
  if (String(text).trim() === "" || !Number.isFinite(value)) {
    return { value: null, error: "Enter the pixel size as a number of micrometres per pixel, for example 0.843." };
  }
  if (value <= 0 || value > 100) {
    return { value: null, error: "The pixel size must be more than 0 and at most 100 µm per pixel." };
  }
  return { value, error: null };
}
