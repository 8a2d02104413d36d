// Package save is the domain of savesync: a game's save state, the ops that
// change it and the merge strategy of each, the catalog, and schema
// migrations. It is plain Go with no I/O beyond reading the game config file,
// so the store can apply its rules inside a Firestore transaction.
package save
