// Tiny DOM helpers: `h` builds elements from data (text is always text, never HTML; styles as
// `{property: value}`, never a style attribute, which the Content-Security-Policy refuses), and
// `mountRegions` re-renders a region only when the slice of state it shows has changed, keeping
// keyboard focus where it was (elements carry `data-focus-key`).

export function h(tag, attributes = {}, ...children) {
  const svg = tag.startsWith("svg:");
  const element = svg
    ? document.createElementNS("http://www.w3.org/2000/svg", tag.slice(4))
    : document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2).toLowerCase(), value);
    } else if (name === "className") {
      element.setAttribute("class", value);
    } else if (name === "dataset") {
      Object.assign(element.dataset, value);
    } else if (name === "style") {
      // Through the CSSOM: the Content-Security-Policy (style-src 'self') refuses style attributes.
      for (const [property, text] of Object.entries(value)) element.style.setProperty(property, text);
    } else if (name === "value" && !svg) {
      element.value = value;
    } else if (name === "checked" || name === "selected" || name === "disabled" || name === "multiple") {
      element[name] = Boolean(value);
      if (value) element.setAttribute(name, "");
    } else {
      element.setAttribute(name, value === true ? "" : String(value));
    }
  }
  appendChildren(element, children);
  return element;
}

function appendChildren(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

// `regions`: [{id, key, render}] in page order. The skeleton is rebuilt when the list of ids
// changes (another screen); each region is rebuilt when its `key` changes.
export function mountRegions(root, regions) {
  const ids = regions.map((region) => region.id).join(",");
  if (root.dataset.regions !== ids) {
    root.replaceChildren(...regions.map((region) => h("div", { id: `region-${region.id}`, className: "region" })));
    root.dataset.regions = ids;
  }
  for (const region of regions) {
    const container = root.querySelector(`#region-${region.id}`);
    const key = JSON.stringify(region.key);
    if (container.dataset.key === key) continue;
    const focused = container.contains(document.activeElement) ? document.activeElement.dataset.focusKey : null;
    container.replaceChildren(...[region.render()].filter(Boolean));  // null renders nothing
    container.dataset.key = key;
    if (focused) container.querySelector(`[data-focus-key="${CSS.escape(focused)}"]`)?.focus();
  }
}
