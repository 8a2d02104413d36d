// Small DOM tools: build elements, and keep a list of keyed children in
// step with data without rebuilding the ones that stay (so a button being
// clicked or an input being typed in survives a live update).

type Attrs = Record<string, string | number | boolean | undefined>;
type Child = Node | string | undefined | false;

/** An element with attributes (false/undefined ones left out) and children. */
export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === false) continue;
    el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) {
    if (c !== undefined && c !== false) el.append(c);
  }
  return el;
}

/** The element with this id; the page's markup guarantees it. */
export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} is missing from index.html`);
  return el as T;
}

/**
 * Makes parent's children one element per key, in order: existing ones
 * (found by data-key) are kept and updated, missing ones created, others
 * removed.
 */
export function syncChildren<K>(
  parent: HTMLElement,
  keys: readonly K[],
  keyOf: (k: K) => string,
  create: (k: K) => HTMLElement,
  update?: (el: HTMLElement, k: K) => void,
): void {
  const existing = new Map<string, HTMLElement>();
  for (const el of Array.from(parent.children)) {
    if (el instanceof HTMLElement && el.dataset.key !== undefined) existing.set(el.dataset.key, el);
  }
  let i = 0;
  for (const k of keys) {
    const key = keyOf(k);
    let el = existing.get(key);
    if (el) {
      existing.delete(key);
    } else {
      el = create(k);
      el.dataset.key = key;
    }
    update?.(el, k);
    if (parent.children[i] !== el) parent.insertBefore(el, parent.children[i] ?? null);
    i++;
  }
  for (const el of existing.values()) el.remove();
}

/** Sets an attribute only when it changes, so observers see real changes only. */
export function setAttr(el: Element, name: string, value: string): void {
  if (el.getAttribute(name) !== value) el.setAttribute(name, value);
}

/** Sets text only when it changes. */
export function setText(el: Node, text: string): void {
  if (el.textContent !== text) el.textContent = text;
}

const numberFormat = new Intl.NumberFormat("en-US");

/** 25000 → "25,000". */
export function formatNumber(n: number): string {
  return numberFormat.format(n);
}

/** A signed amount: +5,000 or −250. */
export function formatDelta(n: number): string {
  return `${n < 0 ? "−" : "+"}${formatNumber(Math.abs(n))}`;
}

const timeFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

/** A timestamp as the reader's locale shows it. */
export function formatTime(iso: string | undefined): string {
  if (!iso) return "";
  const t = new Date(iso);
  return Number.isNaN(t.getTime()) ? "" : timeFormat.format(t);
}
