package save

import (
	"errors"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestErrorCode(t *testing.T) {
	notFound := Errorf(CodeNotFound, "player %s", "42")
	tests := []struct {
		name string
		err  error
		want Code
	}{
		{"nil", nil, ""},
		{"domain", notFound, CodeNotFound},
		{"wrapped", fmt.Errorf("store.Get(42): %w", notFound), CodeNotFound},
		{"plain", errors.New("boom"), CodeInternal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ErrorCode(tt.err); got != tt.want {
				t.Errorf("ErrorCode = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestErrorFormatting(t *testing.T) {
	e := Errorf(CodeInsufficientFunds, "coins %d", 5).WithDetail("balance", int64(5)).WithDetail("currency", "coins")
	if got, want := e.Error(), "INSUFFICIENT_FUNDS: coins 5"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if diff := cmp.Diff(map[string]any{"balance": int64(5), "currency": "coins"}, e.Details); diff != "" {
		t.Errorf("details (-want +got):\n%s", diff)
	}
	got, ok := AsError(fmt.Errorf("wrap: %w", e))
	if !ok || got != e {
		t.Errorf("AsError = %v, %v; want the original error", got, ok)
	}
	if _, ok := AsError(errors.New("x")); ok {
		t.Error("AsError(plain error) = true, want false")
	}
	if got := (&Error{Code: CodeInternal}).Error(); got != "INTERNAL" {
		t.Errorf("Error() without message = %q", got)
	}
}
