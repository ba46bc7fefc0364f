//go:build race

package hostiletest

// raceEnabled: this binary has the race detector, whose shadow memory
// would swamp the peak-memory figure; RunChild then measures a child
// built without it.
const raceEnabled = true
