import { byId } from "./dom";

/**
 * Shows the page's error view when it cannot start (no config.json, say):
 * the message with its code, and a retry button that reloads the page.
 */
export function showStartError(code: string, text: string): void {
  const m = byId("message");
  m.dataset.kind = "error";
  m.dataset.code = code;
  m.setAttribute("role", "alert");
  m.textContent = text;
  m.hidden = false;
  for (const el of document.querySelectorAll<HTMLElement>("main > section")) el.hidden = el.id !== "view-error";
  byId("retry").addEventListener("click", () => location.reload());
  document.body.dataset.view = "error";
}
