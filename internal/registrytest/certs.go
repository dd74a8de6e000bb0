package registrytest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"time"
)

// certKey is a certificate with its private key.
type certKey struct {
	cert *x509.Certificate
	der  []byte
	key  *ecdsa.PrivateKey
}

func (c *certKey) certPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.der})
}

func (c *certKey) keyPEM() ([]byte, error) {
	b, err := x509.MarshalECPrivateKey(c.key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: b}), nil
}

// writeFiles writes the certificate and key as PEM files.
func (c *certKey) writeFiles(certPath, keyPath string) error {
	if err := os.WriteFile(certPath, c.certPEM(), 0o644); err != nil {
		return err
	}
	kb, err := c.keyPEM()
	if err != nil {
		return err
	}
	return os.WriteFile(keyPath, kb, 0o600)
}

// certSpec says what kind of certificate newCert makes.
type certSpec struct {
	commonName string
	ca         bool
	extUsage   []x509.ExtKeyUsage
	ips        []net.IP
	dnsNames   []string
}

// newCert makes an ECDSA P-256 certificate for spec, signed by parent (self
// signed when parent is nil), valid from an hour ago for a day.
func newCert(spec certSpec, parent *certKey) (*certKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: spec.commonName, Organization: []string{"hull registrytest"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		BasicConstraintsValid: true,
		IsCA:                  spec.ca,
		ExtKeyUsage:           spec.extUsage,
		IPAddresses:           spec.ips,
		DNSNames:              spec.dnsNames,
	}
	if spec.ca {
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature
	} else {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	}
	signer, signerCert := key, tmpl
	if parent != nil {
		signer, signerCert = parent.key, parent.cert
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signerCert, &key.PublicKey, signer)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &certKey{cert: cert, der: der, key: key}, nil
}

// newCA makes a self-signed CA named commonName.
func newCA(commonName string) (*certKey, error) {
	return newCert(certSpec{commonName: commonName, ca: true}, nil)
}

// newServerCert makes a server certificate for 127.0.0.1, ::1 and
// localhost signed by ca.
func newServerCert(ca *certKey) (*certKey, error) {
	return newCert(certSpec{
		commonName: "127.0.0.1",
		extUsage:   []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		ips:        []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		dnsNames:   []string{"localhost"},
	}, ca)
}
