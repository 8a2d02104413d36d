// Ledger entries in words: who changed the save, what they did, and what
// it did to balances and counts.
import type { CatalogSKU, Change, LedgerEntry, Op } from "@savesync/client";
import { formatDelta } from "@savesync/page";
import { choiceLabel, label } from "./game";

/** Who wrote an entry, as the player thinks of them. */
export function actorLabel(e: LedgerEntry): string {
  switch (e.actor.kind) {
    case "companion":
      return "You, in the companion";
    case "server":
      return "In game";
    case "admin":
      return "Support";
    default:
      return "Automatic";
  }
}

/** One line per op of an entry. */
export function describeEntry(e: LedgerEntry, catalog: ReadonlyMap<string, CatalogSKU>): string {
  if (e.kind === "restore") return `Save restored${e.reason ? `: ${e.reason}` : ""}`;
  if (e.kind === "refund") return `Purchase refunded${e.reason ? `: ${e.reason}` : ""}`;
  const parts = e.ops.map((op) => describeOp(op, catalog));
  return parts.length > 0 ? parts.join(" · ") : label(e.kind);
}

function describeOp(op: Op, catalog: ReadonlyMap<string, CatalogSKU>): string {
  switch (op.op) {
    case "purchase": {
      const sku = op.sku ?? "";
      return `Bought ${catalog.get(sku)?.name ?? label(sku)}`;
    }
    case "settings.set":
      return `Set ${label(op.key ?? "").toLowerCase()} to ${showValue(op.key ?? "", op.value)}`;
    case "collection.add":
      return `Added “${op.element ?? ""}” to ${label(op.collection ?? "").toLowerCase()}`;
    case "collection.remove":
      return `Removed “${op.element ?? ""}” from ${label(op.collection ?? "").toLowerCase()}`;
    case "currency.add":
      return `${formatDelta(op.amount ?? 0)} ${op.currency ?? ""}`;
    case "xp.add":
      return `${formatDelta(op.amount ?? 0)} xp`;
    case "stat.add":
      return `${formatDelta(op.amount ?? 0)} ${label(op.stat ?? "").toLowerCase()}`;
    case "item.grant":
      return `Got ${op.count ?? 0} × ${label(op.item ?? "").toLowerCase()}`;
    case "item.consume":
      return `Used ${op.count ?? 0} × ${label(op.item ?? "").toLowerCase()}`;
    case "loadout.set":
      return op.item ? `Equipped ${label(op.item).toLowerCase()} (${op.slot ?? ""})` : `Cleared the ${op.slot ?? ""} slot`;
    case "inventory.swap":
      return "Swapped items";
    case "save.replace":
      return "Save replaced";
    default:
      return label(op.op);
  }
}

/** Numeric changes of an entry as chips: "coins −25,000", "wood +200". */
export function changeChips(e: LedgerEntry): string[] {
  const out: string[] = [];
  for (const c of e.changes) {
    const chip = numericChip(c);
    if (chip) out.push(chip);
  }
  return out;
}

function numericChip(c: Change): string | undefined {
  const [kind, id] = c.path.split(".", 2);
  if (!id || (kind !== "currencies" && kind !== "stats" && kind !== "items")) return undefined;
  const before = typeof c.old === "number" ? c.old : 0;
  const after = typeof c.new === "number" ? c.new : 0;
  if (before === after) return undefined;
  return `${label(id).toLowerCase()} ${formatDelta(after - before)}`;
}

function showValue(key: string, v: unknown): string {
  if (v === true) return "on";
  if (v === false) return "off";
  return typeof v === "string" || typeof v === "number" ? choiceLabel(key, v) : String(v);
}
