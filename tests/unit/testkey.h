/*
 * testkey.h - a throwaway RSA-2048 private key (PEM) for the DKIM unit
 * tests, generated for them only. Header-only, like tmpdir.h.
 */
#ifndef VOLLEY_TEST_TESTKEY_H
#define VOLLEY_TEST_TESTKEY_H

static const char rsa_pem[] =
"-----BEGIN PRIVATE KEY-----\n"
"MIIEuwIBADANBgkqhkiG9w0BAQEFAASCBKUwggShAgEAAoIBAQDIO9iQHTwfOzgo\n"
"LXEYcfuYFRklv/dCSEze4PR6b7yJXfmx2IpiwF8bYS73Rlyj/icG0+a5LxsAd9ez\n"
"5cpIK/XryACmMr9Wzfa0Lhi5z5p+FxCPM1rPiLgAcV5AD0cHhGUM2V58CDk1W4Xn\n"
"bzi4X3P4rL7OYV9YCyD3UwqG5dS5/NEJVHCQoq9dIsFcyxLDAxOY5yIe66/EiyPi\n"
"OhbyV2F6jpCl++0ud+6s733Zb7+ismWCky1RHdNzQmQGLjCdTxa7a7+agRgJyDhr\n"
"zFmIKPSZ14XW4zohUOcKDHOEfsaSNmG2GzP2w2NVI/2QFKlZChg1o9u3b9Js9Y7j\n"
"xrz73/fhAgMBAAECgf8IT3ONh6kXIr4R7NDk0tY+WaHRj0YT2ixWk7+R1VFd4iia\n"
"2QHlV1abLE1mteTiaYn1HpZU2T+lpVOug7sBg9GRF5vvSevnDmVO1Rrxm0wuL4bg\n"
"aqE6O9JnMk1XG0s3ZKdNATiKrUyyijnkgRk5jbyidYj1x9TNMqkLmsa1EpThoym0\n"
"bT5c9fmbIwqtlSwuNu9fsvhAMMv+aiR53LJwccu1ImjUxJ1hYt+qc4q4KhyudHrP\n"
"idgOqdkuXwcNBy58qXIK/z48iGB7Ptd2wnBqsasHZAAt3/DttCRh4Uyx5xMxjDtw\n"
"l5U6PkSh76+cYWsu+9pKp+m82j92r8NZ2a/ZKnkCgYEA8bQ7Ytf5L8M6R0/6tcDq\n"
"D0Mr6Mb6bogluI5gNNm/TGd99shg7h404MeETG3NC0lKMV68jtYTQiwhwkktfoHI\n"
"uSoynez+hiyWtx5bcCFtBX/G05Yi7KXi4vqIs8dAsCjNbEWN1RlyZKE7u7FqGzSR\n"
"sJtBuuunGWAtbJ/cHXZ281kCgYEA1BOw4pihWdl4foJJa7+LsOMQT6Jijhwx8nrk\n"
"xcDatAu2cIgCszRhEqpjLU6RrwZ5ZvY5Sts9B3gMi4VzkJ3KQImSnY7FHBB1A8l/\n"
"S42w2qw6JgeELhSNcWxYNmcNa2980ZjtMwWlbh5rH5rN/AizxFrtwvuY4Z7s1hD+\n"
"yuxYP8kCgYEAkDir6snV/WLvZlfZ0BPBVcQN8kKwcb25TEtgKoj3NZ7XMabU96B8\n"
"itdiILyvyZk8tQLDXjNsoGJ27lf91muYmqwMMeGU6fi3IaLyipDXXZ2lxODkC/Lb\n"
"0/YMFcHB3psqH/3MqKgbcuImI1O0bXFLsWairOcp+OFDmXo1vDrQtVkCgYB4ExYJ\n"
"lgV1C85PQpEzcmYzJryrefN3JruY4L/6v3CUlDUdjcSJllSH7vTsSBnwEShXhX12\n"
"xp7NRclEjbCa5twGol3i21z6wM6f8EwkiPrjNLRPp93NAVH8MC3Zz4snkx4GxiE2\n"
"zDGYIZzhbhLGal7uA9Wumik7RXIu2byJRDvLEQKBgFqGj98nIBal0ZhDdIB7bik/\n"
"HCbk6Motx6nx2LHT54Vd5/8w9hy01R2/oFW+pYV4mBRNlhW0mLIro8Ch3haB1wCh\n"
"iyS0qsla/CwZXyZjqNtZLIGre2FWk35sF3cNhoJcx40PTcd45Y6khs0BQvrF0Nu7\n"
"bU2WIYocy4PZAQXBs0DM\n"
"-----END PRIVATE KEY-----\n"
;

#endif
