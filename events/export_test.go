package events

// Observe records the version and reports whether it was fresh: the
// check-and-record of a consumer that handles a message on receipt.
func (d *Deduper) Observe(userID, version int64) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.record(userID, version)
}
