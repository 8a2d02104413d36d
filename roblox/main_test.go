package roblox_test

import (
	"os"
	"testing"

	"github.com/savesync/savesync/internal/authtest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	authtest.Stop()
	os.Exit(code)
}
