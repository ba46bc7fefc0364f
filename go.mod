module auditwatch

go 1.26.8
