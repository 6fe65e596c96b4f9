#!/bin/sh
# Generates the throwaway TLS material of the fake Instagram server into $1:
#   ca.pem                 test CA that clients are told to trust (f.ca_file)
#   server.pem/.key        127.0.0.1 + localhost, signed by the test CA
#   untrusted.pem/.key     127.0.0.1 + localhost, signed by a second, unknown CA
#   wrong_host.pem/.key    wrong.example only (no IP SAN), signed by the test CA
#   expired.pem/.key       127.0.0.1 + localhost, signed by the test CA, expired in 2020
# EC P-256 keys keep this fast. Nothing here is secret; it is regenerated per run.
set -eu
dir=$1
mkdir -p "$dir"
cd "$dir"

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

ca() { # name subject
    key "$1.key"
    openssl req -x509 -new -key "$1.key" -out "$1.pem" -days 3650 -subj "$2" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
}

ext() { # file san
    printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=%s\n' "$2" >"$1"
}

leaf() { # name ca san cn
    key "$1.key"
    openssl req -new -key "$1.key" -out "$1.csr" -subj "/CN=$4" 2>/dev/null
    ext "$1.ext" "$3"
    openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" -set_serial "0x$(openssl rand -hex 8)" \
        -days 825 -extfile "$1.ext" -out "$1.pem" 2>/dev/null
}

ca ca "/CN=lua-instagram fake test CA"
ca other_ca "/CN=lua-instagram untrusted CA"
leaf server ca "IP:127.0.0.1,DNS:localhost" localhost
leaf untrusted other_ca "IP:127.0.0.1,DNS:localhost" localhost
leaf wrong_host ca "DNS:wrong.example" wrong.example

# openssl x509 -req cannot back-date (OpenSSL 3.0); openssl ca can, given a tiny CA database.
key expired.key
openssl req -new -key expired.key -out expired.csr -subj "/CN=localhost" 2>/dev/null
ext expired.ext "IP:127.0.0.1,DNS:localhost"
mkdir -p ca.db
: >ca.db/index.txt
cat >ca.db/ca.cnf <<CNF
[ca]
default_ca = test
[test]
database = $dir/ca.db/index.txt
new_certs_dir = $dir/ca.db
certificate = $dir/ca.pem
private_key = $dir/ca.key
serial = $dir/ca.db/serial
default_md = sha256
policy = any
unique_subject = no
[any]
commonName = supplied
CNF
openssl rand -hex 8 >ca.db/serial
openssl ca -batch -notext -config ca.db/ca.cnf -startdate 20200101000000Z -enddate 20200102000000Z \
    -extfile expired.ext -in expired.csr -out expired.pem 2>/dev/null
if openssl x509 -checkend 0 -noout -in expired.pem >/dev/null; then
    echo "gen-certs: expired.pem is not expired" >&2
    exit 1
fi
rm -rf ca.db ./*.csr ./*.ext ca.srl other_ca.srl
