// Makes the support console's staff accounts on the running Auth emulator
// (FIREBASE_AUTH_EMULATOR_HOST): support@example.com and admin@example.com,
// password staff-123, each with its role claim, as an administrator sets it
// with the Admin SDK. scripts/dev.sh runs it at start.
//
//   node scripts/staff-accounts.mjs [projectId]   (default demo-savesync)
const host = process.env.FIREBASE_AUTH_EMULATOR_HOST;
if (!host) throw new Error("FIREBASE_AUTH_EMULATOR_HOST names no Auth emulator");
const project = process.argv[2] ?? "demo-savesync";
const base = `http://${host}/identitytoolkit.googleapis.com/v1`;

async function post(path, body) {
  const res = await fetch(base + path, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: "Bearer owner" },
    body: JSON.stringify(body),
  });
  if (!res.ok) throw new Error(`${path}: HTTP ${res.status} ${await res.text()}`);
  return res.json();
}

for (const role of ["support", "admin"]) {
  const email = `${role}@example.com`;
  const { localId } = await post(`/projects/${project}/accounts`, { email, password: "staff-123" });
  await post(`/projects/${project}/accounts:update`, { localId, customAttributes: JSON.stringify({ role }) });
  console.log(`staff account ${email} (role ${role})`);
}
