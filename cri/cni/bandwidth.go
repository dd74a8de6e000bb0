package cni

import (
	"fmt"
	"math/big"
	"strings"

	"github.com/containerd/errdefs"
)

// The pod annotations that limit a pod's traffic, in bits per second, as
// Kubernetes resource quantities ("10M", "1Gi", "500k").
const (
	IngressBandwidthAnnotation = "kubernetes.io/ingress-bandwidth"
	EgressBandwidthAnnotation  = "kubernetes.io/egress-bandwidth"
)

// The limits the kubelet has always applied to these annotations: anything
// outside is a typo, not a rate.
var (
	minBandwidth = big.NewRat(1_000, 1)                 // 1kbit
	maxBandwidth = big.NewRat(1_000_000_000_000_000, 1) // 1Pbit
)

// quantitySuffixes are the suffixes of a Kubernetes quantity that can name a
// rate in the accepted range, with their multipliers.
var quantitySuffixes = []struct {
	suffix string
	mult   *big.Rat
}{
	// Two-letter suffixes first, so "Mi" is not read as "M" and "i".
	{"Ki", pow(2, 10)}, {"Mi", pow(2, 20)}, {"Gi", pow(2, 30)},
	{"Ti", pow(2, 40)}, {"Pi", pow(2, 50)}, {"Ei", pow(2, 60)},
	{"k", pow(10, 3)}, {"M", pow(10, 6)}, {"G", pow(10, 9)},
	{"T", pow(10, 12)}, {"P", pow(10, 15)}, {"E", pow(10, 18)},
	{"", pow(10, 0)},
}

func pow(base, exp int64) *big.Rat {
	return new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(base), big.NewInt(exp), nil))
}

// parseBandwidth reads a bandwidth annotation's value: a non-negative
// decimal number ("1", "1.5") with an optional SI or binary suffix, rounded
// up to whole bits per second like a Kubernetes quantity's Value. Exponent
// forms ("1e6") are refused: they are valid quantities but nobody writes a
// rate that way, and accepting them would mean a second number syntax.
func parseBandwidth(s string) (uint64, error) {
	num, mult := s, pow(10, 0)
	for _, q := range quantitySuffixes {
		if q.suffix != "" && strings.HasSuffix(s, q.suffix) {
			num, mult = strings.TrimSuffix(s, q.suffix), q.mult
			break
		}
	}
	if !isDecimal(num) {
		return 0, fmt.Errorf("bandwidth %q is not a quantity like 10M or 1Gi: %w", s, errdefs.ErrInvalidArgument)
	}
	v, ok := new(big.Rat).SetString(num)
	if !ok {
		return 0, fmt.Errorf("bandwidth %q is not a quantity like 10M or 1Gi: %w", s, errdefs.ErrInvalidArgument)
	}
	v.Mul(v, mult)
	if v.Cmp(minBandwidth) < 0 {
		return 0, fmt.Errorf("bandwidth %q is unreasonably small (< 1kbit): %w", s, errdefs.ErrInvalidArgument)
	}
	if v.Cmp(maxBandwidth) > 0 {
		return 0, fmt.Errorf("bandwidth %q is unreasonably large (> 1Pbit): %w", s, errdefs.ErrInvalidArgument)
	}
	// Round up: a limit of 1.5 bits allows at least 1.5 bits.
	q, r := new(big.Int).QuoRem(v.Num(), v.Denom(), new(big.Int))
	if r.Sign() != 0 {
		q.Add(q, big.NewInt(1))
	}
	return q.Uint64(), nil
}

// isDecimal reports whether s is digits with at most one '.', and at least
// one digit: the only number syntax parseBandwidth hands to big.Rat, which
// would also take fractions, signs and hex.
func isDecimal(s string) bool {
	digits, dots := 0, 0
	for _, c := range s {
		switch {
		case c >= '0' && c <= '9':
			digits++
		case c == '.':
			dots++
		default:
			return false
		}
	}
	return digits > 0 && dots <= 1
}
