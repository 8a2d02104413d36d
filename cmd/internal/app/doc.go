// Package app wires savesync: it reads the configuration from the
// environment, picks the Firestore, Pub/Sub and Firebase Auth backends,
// builds the store, the routes and the background event workers, and
// serves until its context ends. The savesync command runs it; the load
// tool runs the same wiring in-process on loopback.
package app
